/*
 * Options of the NBD source, and how VDDK-style configuration files set
 * them. VDDK's NFC timeouts map onto the phases of an NBD connection so a
 * configuration written for VDDK keeps its meaning here.
 */
#include <errno.h>
#include <string.h>

#include "common/common.h"
#include "nbd/nbd.h"

void fy_nbd_opts_default(struct fy_nbd_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->connect_timeout_ms = 30000;
	o->negotiate_timeout_ms = 60000;
	o->read_timeout_ms = 60000;
	o->write_timeout_ms = 60000;
	o->max_in_flight = 16;
	o->max_connections = 1;
	o->reconnect_attempts = 5;
	o->reconnect_base_ms = 500;
	/* Leave the filtering to the global level unless told otherwise. */
	o->log_level = FY_LOG_TRIVIA;
}

const char *const fy_nbd_config_keys[] = {
	"vixDiskLib.nfc.AcceptTimeoutMs",
	"vixDiskLib.nfc.RequestTimeoutMs",
	"vixDiskLib.nfc.ReadTimeoutMs",
	"vixDiskLib.nfc.ReadTimeoutsMs",
	"vixDiskLib.nfc.WriteTimeoutMs",
	"vixDiskLib.nfc.WriteTimeoutsMs",
	"vixDiskLib.nfc.LogLevel",
	/* The rest of the keys VDDK's VixDiskLib_InitEx documents for its
	 * configuration file (the ones above and in agent/ and vsphere/
	 * excepted): Ferry does not act on them itself, the VDDK path passes
	 * them on to VDDK (nbd/vddk.c, nbdkit's config=). */
	"vixDiskLib.nfcFssrvr.TimeoutMs",
	"vixDiskLib.nfcFssrvrWrite.TimeoutMs",
	"vixDiskLib.nfcAio.Session.BufSizeIn64KB",
	"vixDiskLib.nfcAio.Session.BufCount",
	"vixDiskLib.transport.hotadd.NoNfcSession",
	"vixDiskLib.transport.san.blacklist",
	"vixDiskLib.transport.san.whitelist",
	"ferry.nbd.MaxInFlight",
	"ferry.nbd.MaxConnections",
	"ferry.nbd.ReconnectAttempts",
	"ferry.nbd.ReconnectBaseMs",
	"ferry.nbd.TlsRequired",
	"ferry.nbd.TlsCa",
	"ferry.nbd.TlsCert",
	"ferry.nbd.TlsKey",
	"ferry.nbd.TlsServerName",
	/* the VDDK path, nbd/vddk.c */
	"libDir",
	"ferry.nbd.vddkPlugin",
	"ferry.nbd.vddkPluginArgs",
	"ferry.nbd.nbdkit",
	"ferry.nbd.vddkStartTimeoutSeconds",
	NULL,
};

/* A day: longer than any sane timeout, short of overflowing poll(). */
#define MAX_TIMEOUT_MS 86400000

static int get_uint(const struct fy_config *cfg, const char *key,
		    unsigned *val, unsigned min, unsigned max)
{
	int64_t v;
	int rc;

	rc = fy_config_get_int(cfg, key, *val, min, max, &v);
	if (rc)
		return rc;
	*val = (unsigned)v;
	return 0;
}

/* VDDK's documentation spells two keys with "Timeouts"; accept that
 * spelling too. The correct spelling wins when both are present. */
static int get_timeout(const struct fy_config *cfg, const char *key,
		       const char *misspelled, unsigned *val)
{
	const char *used = key;

	if (misspelled && fy_config_get(cfg, misspelled)) {
		if (fy_config_get(cfg, key)) {
			fy_warn("%s (%s) is ignored: %s is set too",
				misspelled,
				fy_config_origin(cfg, misspelled), key);
		} else {
			fy_warn("%s (%s) is a misspelling of %s; using it "
				"anyway",
				misspelled, fy_config_origin(cfg, misspelled),
				key);
			used = misspelled;
		}
	}
	return get_uint(cfg, used, val, 0, MAX_TIMEOUT_MS);
}

int fy_nbd_opts_from_config(struct fy_nbd_opts *o,
			    const struct fy_config *cfg)
{
	int64_t level;
	bool b;
	int rc;

	rc = get_timeout(cfg, "vixDiskLib.nfc.AcceptTimeoutMs", NULL,
			 &o->connect_timeout_ms);
	if (!rc)
		rc = get_timeout(cfg, "vixDiskLib.nfc.RequestTimeoutMs", NULL,
				 &o->negotiate_timeout_ms);
	if (!rc)
		rc = get_timeout(cfg, "vixDiskLib.nfc.ReadTimeoutMs",
				 "vixDiskLib.nfc.ReadTimeoutsMs",
				 &o->read_timeout_ms);
	if (!rc)
		rc = get_timeout(cfg, "vixDiskLib.nfc.WriteTimeoutMs",
				 "vixDiskLib.nfc.WriteTimeoutsMs",
				 &o->write_timeout_ms);
	if (!rc) {
		rc = fy_config_get_int(cfg, "vixDiskLib.nfc.LogLevel",
				       o->log_level, FY_LOG_QUIET,
				       FY_LOG_TRIVIA, &level);
		if (!rc)
			o->log_level = (int)level;
	}
	if (!rc)
		rc = get_uint(cfg, "ferry.nbd.MaxInFlight", &o->max_in_flight,
			      1, FY_NBD_MAX_IN_FLIGHT);
	if (!rc)
		rc = get_uint(cfg, "ferry.nbd.MaxConnections",
			      &o->max_connections, 1, FY_NBD_MAX_CONNECTIONS);
	if (!rc)
		rc = get_uint(cfg, "ferry.nbd.ReconnectAttempts",
			      &o->reconnect_attempts, 0,
			      FY_NBD_MAX_RECONNECTS);
	if (!rc)
		rc = get_uint(cfg, "ferry.nbd.ReconnectBaseMs",
			      &o->reconnect_base_ms, 0, 60000);
	if (!rc) {
		rc = fy_config_get_bool(cfg, "ferry.nbd.TlsRequired",
					o->tls_required, &b);
		if (!rc)
			o->tls_required = b;
	}
	if (rc)
		return rc;
	if (fy_config_get(cfg, "ferry.nbd.TlsCa"))
		o->tls_ca = fy_config_get(cfg, "ferry.nbd.TlsCa");
	if (fy_config_get(cfg, "ferry.nbd.TlsCert"))
		o->tls_cert = fy_config_get(cfg, "ferry.nbd.TlsCert");
	if (fy_config_get(cfg, "ferry.nbd.TlsKey"))
		o->tls_key = fy_config_get(cfg, "ferry.nbd.TlsKey");
	if (fy_config_get(cfg, "ferry.nbd.TlsServerName"))
		o->tls_server_name = fy_config_get(cfg,
						   "ferry.nbd.TlsServerName");
	return 0;
}
