/* storage.c — the storage API over its two drivers (see storage.h). */
#include "storage.h"
