#ifndef CEPOLL_SHIM_H
#define CEPOLL_SHIM_H
/* epoll and eventfd are not part of Swift's Glibc module on Linux. */
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>
#endif
