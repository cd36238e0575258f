/*
 * The VDDK path's internals, for nbd/vddk.c and its tests only.
 */
#ifndef FERRY_NBD_VDDK_INT_H
#define FERRY_NBD_VDDK_INT_H

#include "nbd/nbd.h"

/* Bounds on what a configuration may make us pass to nbdkit. */
#define VDDK_MAX_ARGS 64
#define VDDK_ARG_MAX 4096

struct vddk_argv {
	char *argv[VDDK_MAX_ARGS + 1]; /* NULL-terminated, each malloc'd */
	unsigned argc;
};

/* The nbdkit command line for o: options, then the plugin and its
 * arguments (the mapping in nbd.h), with the socket, pid file and
 * password file in dir. 0 or -errno with a sentence. */
int vddk_build_argv(const struct fy_nbd_vddk_opts *o, const char *dir,
		    struct vddk_argv *out);
void vddk_argv_release(struct vddk_argv *a);

#endif
