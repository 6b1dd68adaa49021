#ifndef CLIBPQ_SHIM_H
#define CLIBPQ_SHIM_H
/* libpq's public API; nothing else. */
#include <libpq-fe.h>
#endif
