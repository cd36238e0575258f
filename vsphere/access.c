/*
 * PrepareForAccess / EndAccess with VDDK's semantics: disable
 * RelocateVM_Task on the VM for the time its disks are read, so that a
 * Storage vMotion cannot move them away mid-backup. Internally
 * AuthorizationManager.DisableMethods / EnableMethods, which live in the
 * internal API namespace and exist only on vCenter.
 *
 * The client remembers every Prepare not yet ended and ends them when it is
 * freed, so that an error path that forgets cannot leave Storage vMotion
 * disabled (the most common complaint about backup products).
 */
#include "vsphere/vs_int.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define SOURCE_PREFIX "ferry:"
#define INTERNAL_NS "urn:internalvim25"
#define RECENT_TASKS_MAX 32

struct vs_access {
	struct vs_access *next;
	struct fy_vs_moref vm;
	char identity[FY_VS_IDENTITY_MAX + 1];
};

static int check_identity(const char *identity)
{
	size_t i, n;

	if (!identity || !*identity)
		return fy_err_set(-EINVAL, "PrepareForAccess needs an identity");
	n = strlen(identity);
	if (n > FY_VS_IDENTITY_MAX)
		return fy_err_set(-EINVAL, "PrepareForAccess identity '%.60s...' "
				  "is longer than %d characters", identity,
				  FY_VS_IDENTITY_MAX);
	for (i = 0; i < n; i++)
		if (!isprint((unsigned char)identity[i]))
			return fy_err_set(-EINVAL, "PrepareForAccess identity "
					  "holds a non-printable character");
	return 0;
}

struct recent {
	struct fy_vs_moref tasks[RECENT_TASKS_MAX];
	size_t n;
	bool relocating;
};

static int recent_object(void *opaque, const struct vs_node *o)
{
	struct recent *r = opaque;
	const struct vs_node *v = vs_prop(o, "recentTask"), *m;

	for (m = vs_first(v); m && r->n < RECENT_TASKS_MAX; m = m->next)
		if (vs_node_moref(m, &r->tasks[r->n]) == 0)
			r->n++;
	return 0;
}

static int task_object(void *opaque, const struct vs_node *o)
{
	struct recent *r = opaque;
	const struct vs_node *info = vs_prop(o, "info");
	const char *name = vs_child_text(info, "name");
	const char *desc = vs_child_text(info, "descriptionId");
	const char *state = vs_child_text(info, "state");
	bool relocate = (name && (!strcmp(name, "RelocateVM_Task") ||
				  !strcmp(name, "RelocateVm"))) ||
			(desc && !strcmp(desc, "VirtualMachine.relocate"));

	if (relocate && state &&
	    (!strcmp(state, "running") || !strcmp(state, "queued")))
		r->relocating = true;
	return 0;
}

/* Whether a RelocateVM_Task (a Storage vMotion) runs on vm now. */
static int relocation_running(struct fy_vs_client *c,
			      const struct fy_vs_moref *vm, bool *running)
{
	static const char *const vm_paths[] = { "recentTask", NULL };
	static const char *const task_paths[] = { "info", NULL };
	struct vs_prop_spec vspec = { "VirtualMachine", vm_paths };
	struct vs_prop_spec tspec = { "Task", task_paths };
	struct recent r;
	size_t i;
	int rc;

	memset(&r, 0, sizeof(r));
	rc = vs_retrieve(c, vm, false, &vspec, 1, recent_object, &r);
	if (rc < 0)
		return rc;
	for (i = 0; i < r.n && !r.relocating; i++) {
		/* A task gone from the history is not running. */
		rc = vs_retrieve(c, &r.tasks[i], false, &tspec, 1, task_object,
				 &r);
		if (rc == -ENOENT)
			rc = 0;
		if (rc < 0)
			return rc;
	}
	*running = r.relocating;
	return 0;
}

/* DisableMethods and EnableMethods take the same arguments but for the
 * shape of the method list: a DisabledMethodRequest for the one, a plain
 * name for the other. */
static int call_methods(struct fy_vs_client *c, const char *call,
			const char *method_list, const struct fy_vs_moref *vm,
			const char *identity)
{
	struct vs_reply r;
	struct vs_buf b;
	int rc;

	vs_buf_init(&b, 4096);
	vs_buf_moref(&b, "entity", vm);
	vs_buf_str(&b, method_list);
	vs_buf_printf(&b, "<sourceId>" SOURCE_PREFIX);
	vs_buf_esc(&b, identity);
	vs_buf_str(&b, "</sourceId>");
	rc = b.err ? fy_err_set(b.err, "request too large")
		   : vs_call(c, call, INTERNAL_NS, &c->authorization_manager,
			     b.data, vm->value, &r);
	vs_buf_release(&b);
	if (rc == 0)
		vs_reply_release(&r);
	return rc;
}

static int disable_methods(struct fy_vs_client *c, const struct fy_vs_moref *vm,
			   const char *identity)
{
	return call_methods(c, "DisableMethods",
			    "<method><method>RelocateVM_Task</method></method>",
			    vm, identity);
}

static int enable_methods(struct fy_vs_client *c, const struct fy_vs_moref *vm,
			  const char *identity)
{
	return call_methods(c, "EnableMethods",
			    "<method>RelocateVM_Task</method>", vm, identity);
}

static int remember(struct fy_vs_client *c, const struct fy_vs_moref *vm,
		    const char *identity)
{
	struct vs_access *a = calloc(1, sizeof(*a));

	if (!a)
		return fy_err_set(-ENOMEM, "out of memory");
	a->vm = *vm;
	snprintf(a->identity, sizeof(a->identity), "%s", identity);
	pthread_mutex_lock(&c->lock);
	a->next = c->access;
	c->access = a;
	pthread_mutex_unlock(&c->lock);
	return 0;
}

/* Forgets one Prepare of (vm, identity); false if there was none. */
static bool forget(struct fy_vs_client *c, const struct fy_vs_moref *vm,
		   const char *identity)
{
	struct vs_access **pp, *a;
	bool found = false;

	pthread_mutex_lock(&c->lock);
	for (pp = &c->access; (a = *pp); pp = &a->next)
		if (vs_moref_eq(&a->vm, vm) && !strcmp(a->identity, identity)) {
			*pp = a->next;
			free(a);
			found = true;
			break;
		}
	pthread_mutex_unlock(&c->lock);
	return found;
}

int fy_vs_prepare_for_access(struct fy_vs_client *c,
			     const struct fy_vs_moref *vmref,
			     const char *identity)
{
	struct fy_vs_moref vm = vs_typed(vmref, "VirtualMachine");
	int attempt, rc;

	vs_fault_clear();
	rc = check_identity(identity);
	if (rc < 0)
		return rc;
	if (!c->is_vcenter) {
		fy_warn("vsphere: PrepareForAccess of %s: %s is an ESXi host "
			"(HostAgent), not a vCenter, and cannot disable "
			"methods: Storage vMotion of this VM is not blocked "
			"during the backup", vm.value, c->url);
		return 0;
	}
	for (attempt = 0;; attempt++) {
		bool busy = false;

		rc = relocation_running(c, &vm, &busy);
		if (rc < 0)
			return fy_err_wrap(rc, "PrepareForAccess of %s", vm.value);
		if (!busy) {
			rc = disable_methods(c, &vm, identity);
			if (rc == 0)
				break;
			if (!strcmp(fy_vs_last_fault()->type,
				    "MethodAlreadyDisabledFault")) {
				/* Relocation is blocked all the same; EndAccess
				 * only lifts our own source's block. */
				fy_warn("vsphere: PrepareForAccess of %s: "
					"RelocateVM_Task already disabled (%s)",
					vm.value, fy_vs_last_fault()->detail);
				rc = 0;
				break;
			}
			if (strcmp(fy_vs_last_fault()->type, "TaskInProgress"))
				return fy_err_wrap(rc, "PrepareForAccess of %s",
						   vm.value);
			busy = true;
		}
		if (attempt >= c->prepare_retries)
			return fy_err_set(-EBUSY, "PrepareForAccess of %s: a "
					  "Storage vMotion is still running "
					  "after %d retries %d s apart",
					  vm.value, c->prepare_retries,
					  c->prepare_interval_s);
		fy_info("vsphere: PrepareForAccess of %s: a Storage vMotion is "
			"running; retry %d of %d in %d s", vm.value, attempt + 1,
			c->prepare_retries, c->prepare_interval_s);
		vs_sleep_ms(c->prepare_interval_s * 1000L);
	}
	rc = remember(c, &vm, identity);
	if (rc < 0) {
		/* Cannot track it: undo rather than leave it behind. */
		enable_methods(c, &vm, identity);
		return rc;
	}
	fy_debug("vsphere: RelocateVM_Task disabled on %s for %s%s", vm.value,
		 SOURCE_PREFIX, identity);
	return 0;
}

int fy_vs_end_access(struct fy_vs_client *c, const struct fy_vs_moref *vmref,
		     const char *identity)
{
	struct fy_vs_moref vm = vs_typed(vmref, "VirtualMachine");
	int rc;

	vs_fault_clear();
	rc = check_identity(identity);
	if (rc < 0)
		return rc;
	if (!c->is_vcenter)
		return 0;
	rc = enable_methods(c, &vm, identity);
	if (rc < 0)
		return fy_err_wrap(rc, "EndAccess of %s", vm.value);
	forget(c, &vm, identity);
	fy_debug("vsphere: RelocateVM_Task enabled again on %s", vm.value);
	return 0;
}

void vs_access_end_all(struct fy_vs_client *c)
{
	struct vs_access *a;

	for (;;) {
		pthread_mutex_lock(&c->lock);
		a = c->access;
		if (a)
			c->access = a->next;
		pthread_mutex_unlock(&c->lock);
		if (!a)
			break;
		fy_warn("vsphere: PrepareForAccess of %s (%s) was never ended; "
			"ending it now", a->vm.value, a->identity);
		if (enable_methods(c, &a->vm, a->identity) < 0)
			fy_error("vsphere: EndAccess of %s failed: %s; Storage "
				 "vMotion stays disabled until "
				 "EnableMethods with source %s%s is called",
				 a->vm.value, fy_err_msg(), SOURCE_PREFIX,
				 a->identity);
		free(a);
	}
}
