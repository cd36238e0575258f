/*
 * What the two halves of `ferry` share (private to agent/): the parsed
 * command line, and the helpers and commands each half gives the other.
 * ferry_main.c: options, the repository's commands (list, show, restore,
 * mount, ca) and the command table; ferry_jobs.c: the agent service's
 * client (agent status, backup, restore-vm, jobs, watch, cancel, cleanup;
 * docs/CONTROL.md).
 */
#ifndef FERRY_AGENT_FERRY_CLI_H
#define FERRY_AGENT_FERRY_CLI_H

#include "agent/control.h"

struct cli {
	const char *config;
	const char *overrides[FY_CLI_SETS_MAX][2];
	unsigned n_overrides;
	bool json;
	const char *output;
	long disk;
	const char *san;
	const char *role;
	bool all_namespaces;
	/* mount */
	const char *listen, *socket, *ready_file, *nbd_cert, *nbd_key;
	bool tls, force;
	long cache_mb;
	/* the agent service's commands */
	const char *agent;
	const char *vm;
	const char *transport;
	const char *name;
	const char *snapshot;
	const char *repository;  /* --repository as given, for ferry backup */
	unsigned disks[FY_JOB_DISKS_MAX];
	unsigned n_disks;
	int mode;                /* FY_JOB_AUTO, FY_JOB_FULL, FY_JOB_INCREMENTAL */
	bool enable_cbt, quiesce, wait, quiet, detach;
	/* restore-vm */
	const char *datastore, *host, *pool, *folder, *provisioning, *into;
	const char *networks[FY_RESTORE_NETWORKS_MAX];
	unsigned n_networks;
	bool keep_mac, power_on;
};

/* "ferry: WHAT: <the error>" on stderr; returns 1 (the exit status). */
int ferry_fail(const char *what);
/* --config, then the command line's --set and key flags over it. */
int ferry_load_config(struct cli *cli, struct fy_config **out);

int ferry_cmd_agent(struct cli *cli, int argc, char **argv);
int ferry_cmd_backup(struct cli *cli, int argc, char **argv);
int ferry_cmd_restore_vm(struct cli *cli, int argc, char **argv);
int ferry_cmd_jobs(struct cli *cli, int argc, char **argv);
int ferry_cmd_watch(struct cli *cli, int argc, char **argv);
int ferry_cmd_cancel(struct cli *cli, int argc, char **argv);
int ferry_cmd_cleanup(struct cli *cli, int argc, char **argv);

#endif
