/* common.h — what the daemons may use of common/: include this one header. */
#ifndef HEARTH_COMMON_H
#define HEARTH_COMMON_H

#include "ackq.h"
#include "arena.h"
#include "buf.h"
#include "component.h"
#include "config.h"
#include "conn.h"
#include "daemon.h"
#include "jid.h"
#include "log.h"
#include "map.h"
#include "rate.h"
#include "sasl.h"
#include "tls.h"
#include "xml.h"
#include "xmpp.h"
#include "xstream.h"

#endif
