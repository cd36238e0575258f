/*
 * The VDDK path's internals, for nbd/vddk.c and its tests only.
 */
#ifndef FERRY_NBD_VDDK_INT_H
#define FERRY_NBD_VDDK_INT_H

#include "nbd/nbd.h"

/* Bounds on what a configuration may make us pass to nbdkit. */
#define VDDK_MAX_ARGS 64
#define VDDK_ARG_MAX 4096
/* The VDDK configuration file Ferry writes (a few dozen keys at most). */
#define VDDK_CONFIG_MAX 16384

struct vddk_argv {
	char *argv[VDDK_MAX_ARGS + 1]; /* NULL-terminated, each malloc'd */
	unsigned argc;
};

/* The nbdkit command line for o: options, then the plugin and its
 * arguments (the mapping in nbd.h), with the socket, pid file and
 * password file in dir. 0 or -errno with a sentence. */
/* The VDDK configuration file the vddk plugin is given (config=): every
 * key of VDDK's documented InitEx list that o->cfg sets, as KEY=VALUE
 * lines. Returns its length (0: none, no file), or -ENAMETOOLONG when it
 * does not fit len. */
int vddk_config_text(const struct fy_nbd_vddk_opts *o, char *buf, size_t len);
int vddk_build_argv(const struct fy_nbd_vddk_opts *o, const char *dir,
		    struct vddk_argv *out);
void vddk_argv_release(struct vddk_argv *a);

#endif
