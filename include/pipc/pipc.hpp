// Everything pipc offers C++ programs, in one include.
#ifndef PIPC_PIPC_HPP
#define PIPC_PIPC_HPP

#include <pipc/common.hpp>
#include <pipc/error.hpp>
#include <pipc/message_queue.hpp>
#include <pipc/semaphore.hpp>
#include <pipc/shared_memory.hpp>
#include <pipc/version.hpp>

#endif  // PIPC_PIPC_HPP
