/*
 * ferry-agent run: the agent as a service. docs/CONTROL.md.
 *
 *   ferry-agent run --config FILE [--set KEY=VALUE] [--log-level N]
 *                   [--ready-file F]
 *
 * At start: the configuration, the log, then the self-cleanup (what a dead
 * agent left on this proxy), whose result Status reports; a vCenter that
 * cannot be reached is logged and the service serves anyway. Then the
 * control API (proto/control.proto) on ferry.control.listen over mutual
 * TLS 1.3: the agent presents ferry.tls.cert, a controller must present a
 * certificate that chains to ferry.tls.ca.
 *
 * Threads: the main thread accepts and handles signals (signalfd); one
 * thread per controller connection (at most ferry.control.maxClients); one
 * per job, backup or restore-vm (at most ferry.jobs.max; service_jobs.c).
 * This file is the configuration and the lifecycle; the connections are in
 * service_conn.c, the requests about jobs in service_cmds.c. A job never
 * waits for a controller: it records its phases and counters under the
 * lock and the connection threads that watch it send them on; a
 * controller that goes away only ends its own thread.
 *
 * SIGTERM/SIGINT: stop accepting, cancel every job, wait until each has
 * undone what it did (detach, snapshot removal, EndAccess) and for a
 * cleanup that runs (bounded), exit 0.
 * SIGHUP: reload the configuration file; jobs started from then on use it.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "agent/service_int.h"

/* ---- configuration ------------------------------------------------------- */

void cfg_unref(struct svc_cfg *c)
{
	if (c && --c->refs == 0) {
		fy_config_free(c->cfg);
		free(c);
	}
}

static int load_config(const char *path, const char *const *sets,
		       unsigned n_sets, struct svc_cfg **out)
{
	struct svc_cfg *c = calloc(1, sizeof(*c));
	unsigned i;
	int rc;

	if (!c || !(c->cfg = fy_config_new())) {
		free(c);
		return fy_err_set(-ENOMEM, "out of memory");
	}
	c->refs = 1;
	rc = fy_config_load(c->cfg, path);
	for (i = 0; rc == 0 && i < n_sets; i++)
		rc = fy_config_set_pair(c->cfg, sets[i]);
	if (rc < 0) {
		cfg_unref(c);
		return rc;
	}
	*out = c;
	return 0;
}

/* The service's own keys with their ranges. */
static int service_limits(const struct fy_config *cfg, unsigned *max_jobs,
			  unsigned *max_clients)
{
	int64_t v;
	int rc;

	if ((rc = fy_config_get_int(cfg, "ferry.jobs.max", 2, 1, 16, &v)) < 0)
		return rc;
	*max_jobs = (unsigned)v;
	if ((rc = fy_config_get_int(cfg, "ferry.control.maxClients", 32, 1,
				    256, &v)) < 0)
		return rc;
	*max_clients = (unsigned)v;
	return 0;
}

static bool same_value(const struct fy_config *a, const struct fy_config *b,
		       const char *key)
{
	const char *x = fy_config_get(a, key), *y = fy_config_get(b, key);

	return (!x && !y) || (x && y && !strcmp(x, y));
}

/* SIGHUP: the file again; a broken file keeps the running configuration. */
static void reload(struct svc *svc)
{
	static const char *const restart_keys[] = {
		"ferry.control.listen", "ferry.control.maxClients",
		"ferry.control.handshakeTimeout", "ferry.control.maxHandshakes",
		"ferry.control.maxHandshakesPerAddress", "ferry.tls.cert",
		"ferry.tls.key", "ferry.tls.ca", "ferry.tls.crl",
	};
	struct svc_cfg *c = NULL;
	unsigned max_jobs, max_clients, i;

	if (load_config(svc->config_path, svc->sets, svc->n_sets, &c) < 0 ||
	    service_limits(c->cfg, &max_jobs, &max_clients) < 0 ||
	    fy_agent_setup_logging(c->cfg, svc->log_level) < 0) {
		fy_error("SIGHUP: %s; keeping the running configuration",
			 fy_err_msg());
		if (c)
			cfg_unref(c);
		return;
	}
	for (i = 0; i < sizeof(restart_keys) / sizeof(restart_keys[0]); i++)
		if (!same_value(svc->cfg->cfg, c->cfg, restart_keys[i]))
			fy_warn("SIGHUP: %s changed; it takes effect when "
				"ferry-agent run restarts", restart_keys[i]);
	pthread_mutex_lock(&svc->lock);
	cfg_unref(svc->cfg);
	svc->cfg = c;
	svc->cfg_generation++;
	if (max_jobs != svc->max_jobs)
		fy_warn("SIGHUP: ferry.jobs.max is now %u (was %u)", max_jobs,
			svc->max_jobs);
	svc->max_jobs = max_jobs;
	pthread_mutex_unlock(&svc->lock);
	fy_warn("SIGHUP: reloaded %s; new jobs use it", svc->config_path);
}

/* Waits on svc->cond (svc->lock held) at most ms. */
void timed_wait(struct svc *svc, int ms)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_cond_timedwait(&svc->cond, &svc->lock, &ts);
}

/* Runs the self-cleanup and records its result for Status. */
void run_cleanup(struct svc *svc, struct svc_cfg *cfg, bool own_jobs,
			struct cleanup_state *out)
{
	memset(out, 0, sizeof(*out));
	out->ran = true;
	out->when = time(NULL);
	out->rc = fy_job_cleanup(cfg->cfg, own_jobs, &out->rep);
	if (out->rc < 0) {
		snprintf(out->error, sizeof(out->error), "%s", fy_err_msg());
		fy_error("self-cleanup failed: %s", out->error);
	} else {
		fy_warn("self-cleanup: numCleanedUp=%u numRemaining=%u",
			out->rep.cleaned, out->rep.remaining);
	}
	pthread_mutex_lock(&svc->lock);
	svc->cleanup = *out;
	pthread_mutex_unlock(&svc->lock);
}

static void write_ready_file(const char *path, const char *bound)
{
	char tmp[4096];
	FILE *f;

	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	f = fopen(tmp, "w");
	if (!f) {
		fy_warn("cannot write %s: %s", tmp, strerror(errno));
		return;
	}
	fprintf(f, "%s\n", bound);
	if (fclose(f) != 0 || rename(tmp, path) != 0)
		fy_warn("cannot write %s: %s", path, strerror(errno));
}

/* SIGTERM: every job is cancelled and undoes what it did; we wait for all
 * of them (a supervisor's stop timeout bounds this), then for a cleanup
 * that runs (bounded), then a little for the controllers to get their
 * final events. */
static void shut_down(struct svc *svc)
{
	struct svc_job *j;
	double start = fy_now(), said = start;
	int64_t limit;
	bool busy;

	pthread_mutex_lock(&svc->lock);
	svc->stopping = true;
	if (svc->active)
		fy_warn("stopping: cancelling %u job(s) and waiting for them "
			"to undo what they did", svc->active);
	for (j = svc->jobs; j; j = j->next)
		if (!j->res)
			atomic_store(&j->cancel, true);
	pthread_cond_broadcast(&svc->cond);
	while (svc->active) {
		timed_wait(svc, 1000);
		if (svc->active && fy_now() - said >= 10) {
			said = fy_now();
			fy_warn("stopping: still waiting for %u job(s)",
				svc->active);
		}
	}
	/* A cleanup detaches disks, removes snapshots and rewrites the
	 * journal: let it end, as long as a controller would wait for it.
	 * No cleanup starts once stopping is set. */
	if (fy_config_get_int(svc->cfg->cfg, "ferry.timeoutSeconds", 300, 1,
			      86400, &limit) < 0)
		limit = 300;
	if (svc->cleanup_running)
		fy_warn("stopping: waiting (at most %" PRId64 " s) for the "
			"self-cleanup to end", limit);
	start = fy_now();
	while (svc->cleanup_running && fy_now() - start < (double)limit)
		timed_wait(svc, 1000);
	start = fy_now();
	while (svc->clients && fy_now() - start < 5)
		timed_wait(svc, 200);
	busy = svc->clients || svc->cleanup_running;
	if (busy)
		fy_warn("stopping: %u controller connection(s)%s still busy; "
			"exiting without them", svc->clients,
			svc->cleanup_running ? " and the self-cleanup" : "");
	pthread_mutex_unlock(&svc->lock);
	/* Returning runs the atexit handlers (OpenSSL's teardown among them)
	 * under the threads still at work: leave without them. The journal
	 * is rewritten durably, so a cleanup cut short leaves its entries
	 * for the next start. */
	if (busy) {
		fy_warn("ferry-agent run: stopped");
		fflush(NULL);
		_exit(0);
	}
}

/* Before authentication (proto/wire.h, the handshake gate): the keys
 * ferry.control.handshakeTimeout, maxHandshakes, maxHandshakesPerAddress. */
static int gate_options(const struct fy_config *cfg, struct fy_gate_opts *go)
{
	int64_t timeout, pending, per_address;
	int rc;

	if ((rc = fy_config_get_int(cfg, "ferry.control.handshakeTimeout", 10,
				    1, 300, &timeout)) < 0 ||
	    (rc = fy_config_get_int(cfg, "ferry.control.maxHandshakes", 16, 1,
				    256, &pending)) < 0 ||
	    (rc = fy_config_get_int(cfg, "ferry.control.maxHandshakesPerAddress",
				    pending < 4 ? pending : 4, 1, pending,
				    &per_address)) < 0)
		return rc;
	*go = (struct fy_gate_opts){
		.what = "control",
		.handshake_timeout_ms = (int)timeout * 1000,
		.max_pending = (unsigned)pending,
		.max_per_address = (unsigned)per_address,
		.io_timeout_ms = REQUEST_MS,
	};
	return 0;
}

static int serve(struct svc *svc, const char *ready_file)
{
	const char *listen = fy_config_get(svc->cfg->cfg, "ferry.control.listen");
	struct fy_settings s;
	struct fy_gate_opts go;
	struct fy_gate *gate = NULL;
	struct pollfd pfd[1];
	char bound[300] = "";
	sigset_t mask;
	int lfd = -1, sfd = -1, rc;

	if (!listen)
		return fy_err_set(-EINVAL, "ferry.control.listen is not set: "
				  "the address the control API listens on, "
				  "HOST:PORT");
	if ((rc = fy_settings_load(svc->cfg->cfg, &s)) < 0 ||
	    (rc = fy_tls_new_server(&s.tls, &svc->tls)) < 0)
		return rc;
	rc = fy_listen(listen, &lfd, bound, sizeof(bound));
	if (rc < 0)
		return rc;
	snprintf(svc->listen, sizeof(svc->listen), "%s", bound);
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	sfd = signalfd(-1, &mask, SFD_CLOEXEC);
	if (sfd < 0) {
		rc = fy_err_set(-errno, "signalfd: %s", strerror(errno));
		close(lfd);
		return rc;
	}
	fy_warn("ferry-agent %s serving the control API on %s (at most %u "
		"jobs at once)", FERRY_VERSION, bound, svc->max_jobs);
	if ((rc = gate_options(svc->cfg->cfg, &go)) < 0 ||
	    (rc = fy_gate_start(svc->tls, lfd, &go, svc_on_controller, svc,
				&gate)) < 0) {
		close(lfd);
		close(sfd);
		return rc;
	}
	if (ready_file)
		write_ready_file(ready_file, bound);
	pfd[0] = (struct pollfd){ .fd = sfd, .events = POLLIN };
	for (;;) {
		struct signalfd_siginfo si;

		if (poll(pfd, 1, -1) < 0) {
			if (errno == EINTR)
				continue;
			rc = fy_err_set(-errno, "poll: %s", strerror(errno));
			break;
		}
		if (pfd[0].revents & POLLIN) {
			if (read(sfd, &si, sizeof(si)) != sizeof(si))
				continue;
			if (si.ssi_signo == SIGHUP) {
				reload(svc);
				continue;
			}
			fy_warn("%s: stopping", strsignal((int)si.ssi_signo));
			rc = 0;
			break;
		}
	}
	fy_gate_stop(gate);
	close(lfd);
	close(sfd);
	shut_down(svc);
	return rc;
}

int agent_cmd_run(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, RO_CONFIG },
		{ "set", required_argument, NULL, RO_SET },
		{ "log-level", required_argument, NULL, RO_LOG_LEVEL },
		{ "ready-file", required_argument, NULL, RO_READY_FILE },
		{ NULL, 0, NULL, 0 },
	};
	static struct svc svc; /* its threads may outlive a stack frame */
	struct cleanup_state *cs = NULL;
	const char *sets[64], *ready_file = NULL;
	unsigned n_sets = 0;
	sigset_t mask;
	int c, rc = 0;

	pthread_mutex_init(&svc.lock, NULL);
	pthread_cond_init(&svc.cond, NULL);
	svc.log_level = -1;
	optind = 1;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case RO_CONFIG: svc.config_path = optarg; break;
		case RO_READY_FILE: ready_file = optarg; break;
		case RO_LOG_LEVEL: {
			char *end;
			long v = strtol(optarg, &end, 10);

			if (*end || !*optarg || v < 0 || v > 6) {
				fprintf(stderr, "ferry-agent: --log-level takes "
					"0..6\n");
				return 2;
			}
			svc.log_level = (int)v;
			break;
		}
		case RO_SET:
			if (n_sets == 64) {
				fprintf(stderr, "ferry-agent: at most 64 --set\n");
				return 2;
			}
			sets[n_sets++] = optarg;
			break;
		default:
			goto usage;
		}
	}
	if (optind < argc || !svc.config_path)
		goto usage;
	/* Status carries the path, and a controller refuses a longer
	 * string: better not to start than to serve a Status nobody reads. */
	if (strlen(svc.config_path) > FY_CONTROL_NAME_MAX) {
		rc = fy_err_set(-ENAMETOOLONG, "--config: the path is %zu bytes, "
				"more than the %d a controller accepts in "
				"Status; give a shorter one",
				strlen(svc.config_path), FY_CONTROL_NAME_MAX);
		goto fail;
	}
	svc.sets = sets;
	svc.n_sets = n_sets;
	svc.started = time(NULL);

	/* Before any thread starts, so that every thread inherits the mask
	 * and only the signalfd sees these signals. */
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &mask, NULL);

	if ((rc = load_config(svc.config_path, sets, n_sets, &svc.cfg)) < 0 ||
	    (rc = fy_agent_setup_logging(svc.cfg->cfg, svc.log_level)) < 0 ||
	    (rc = service_limits(svc.cfg->cfg, &svc.max_jobs,
				 &svc.max_clients)) < 0)
		goto fail;
	if (!fy_config_get(svc.cfg->cfg, "ferry.control.listen")) {
		rc = fy_err_set(-EINVAL, "ferry.control.listen is not set: the "
				"address the control API listens on, HOST:PORT");
		goto fail;
	}
	/* The self-cleanup first: what a dead agent left on this proxy is
	 * undone before any job of ours starts. */
	cs = malloc(sizeof(*cs));
	if (!cs) {
		rc = fy_err_set(-ENOMEM, "out of memory");
		goto fail;
	}
	run_cleanup(&svc, svc.cfg, false, cs);
	if (cs->rc < 0)
		fy_warn("serving anyway; `ferry agent status` reports the "
			"failed cleanup and `ferry cleanup` retries it");
	free(cs);
	rc = serve(&svc, ready_file);
	if (rc < 0)
		goto fail;
	fy_warn("ferry-agent run: stopped");
	return 0;
usage:
	fprintf(stderr, "usage: ferry-agent run --config FILE [--set KEY=VALUE] "
		"[--log-level N] [--ready-file F]\n"
		"  The agent service: self-cleanup, then the control API on "
		"ferry.control.listen\n  (mutual TLS; docs/CONTROL.md).\n");
	return 2;
fail:
	fprintf(stderr, "ferry-agent: run: %s\n", fy_err_msg());
	return 1;
}
