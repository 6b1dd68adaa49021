#ifndef CEPOLL_SHIM_H
#define CEPOLL_SHIM_H
/* epoll, eventfd and timerfd are not part of Swift's Glibc module on Linux, nor is naming a thread
   (prctl is variadic, which Swift cannot call). */
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <sys/prctl.h>
#include <unistd.h>

/* Names the calling thread as `top -H` and /proc/<pid>/task/<tid>/comm show it (15 bytes). */
static inline void cepoll_name_thread(const char *name) {
    prctl(PR_SET_NAME, (unsigned long)name, 0, 0, 0);
}
#endif
