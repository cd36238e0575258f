/*
 * agent/control.h: the agent service (`ferry-agent run`, service.c) and
 * what it shares with its reference client (`ferry agent status`, `ferry
 * backup`, ...: ferry_main.c): job results and counters to and from the
 * control protocol's messages (proto/control.proto). Private to agent/.
 */
#ifndef FERRY_AGENT_CONTROL_H
#define FERRY_AGENT_CONTROL_H

#include "agent/job.h"
#include "agent/transport.h"

/* Keys the service and the client read (ferry.control.*, ferry.jobs.*,
 * ferry.agent*); NULL-terminated. */
extern const char *const fy_service_config_keys[];

/* ferry-agent run (service.c). */
int agent_cmd_run(int argc, char **argv);

/* ---- messages (control.c) ---------------------------------------------- */

/* A job result as a JobResult message; the message points into this
 * holder and into res, which must outlive it. */
struct fy_control_result_msg {
	Ferry__Control__JobResult r;
	Ferry__Control__DiskResult d[FY_JOB_DISKS_MAX];
	Ferry__Control__DiskResult *dp[FY_JOB_DISKS_MAX];
	Ferry__Control__DiskProgress c[FY_JOB_DISKS_MAX];
};
void fy_control_result_msg(struct fy_control_result_msg *m,
			   const struct fy_job_result *res);
/* A received JobResult (already bounds-checked) back into a result. */
void fy_control_result_from(const Ferry__Control__JobResult *m,
			    struct fy_job_result *res);

void fy_control_progress_msg(Ferry__Control__DiskProgress *m, unsigned disk,
			     unsigned n_disks, const struct fy_disk_stats *st,
			     bool done);
void fy_control_progress_from(const Ferry__Control__DiskProgress *m,
			      struct fy_disk_stats *st);

/* "running", "succeeded", "failed", "cancelled", "queued". */
const char *fy_control_state_name(Ferry__Control__JobState s);

#endif
