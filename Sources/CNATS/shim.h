// The official NATS C client (Debian's libnats-dev 3.4.1); the bare <nats.h> is deprecated.
#include <nats/nats.h>
