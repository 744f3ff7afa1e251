// Debian's libpq (libpq-dev), the PostgreSQL C client; pkg-config libpq gives -I/usr/include/postgresql.
#ifndef CLIBPQ_SHIM_H
#define CLIBPQ_SHIM_H
#include <libpq-fe.h>
#endif
