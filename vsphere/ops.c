/*
 * Operations on VMs: tasks, snapshots, consolidation, changed block
 * tracking, adding and removing disks, relocation.
 *
 * What a task reports is not trusted alone where it matters: after a
 * reconfigure the device list is read back and checked.
 */
#include "vsphere/vs_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BODY_MAX (1u << 20)
/* QueryChangedDiskAreas calls for one disk: far more than any real disk
 * needs (each call covers gigabytes), few enough to stop a server that
 * makes no progress. */
#define AREA_CALLS_MAX 10000000u
/* Areas kept by fy_vs_changed_areas_get (64 MiB of them). */
#define AREAS_MAX (1u << 22)

/* ---- tasks ------------------------------------------------------------- */

struct task_poll {
	struct vs_task_info info;
	bool found;
	int rc;
};

static int task_object(void *opaque, const struct vs_node *o)
{
	struct task_poll *t = opaque;

	t->found = true;
	t->rc = vs_parse_task_info(vs_prop(o, "info"), &t->info);
	return t->rc;
}

int fy_vs_task_wait(struct fy_vs_client *c, const struct fy_vs_moref *task,
		    const char *what, int timeout_s, struct fy_vs_moref *result)
{
	static const char *const paths[] = { "info", NULL };
	struct vs_prop_spec spec = { "Task", paths };
	double deadline;
	long delay_ms = 100;
	int last_progress = -2, rc;

	if (!what)
		what = task->value;
	if (timeout_s <= 0)
		timeout_s = c->task_timeout_s;
	deadline = fy_now() + timeout_s;
	for (;;) {
		struct task_poll t;

		memset(&t, 0, sizeof(t));
		rc = vs_retrieve(c, task, false, &spec, 1, task_object, &t);
		if (rc < 0)
			return fy_err_wrap(rc, "waiting for %s (%s)", what,
					   task->value);
		if (!t.found)
			return fy_err_set(-ENOENT, "task %s of %s vanished",
					  task->value, what);
		if (t.info.progress != last_progress && c->progress &&
		    strcmp(t.info.state, "success") &&
		    strcmp(t.info.state, "error"))
			c->progress(c->progress_opaque, what, t.info.progress);
		last_progress = t.info.progress;
		if (!strcmp(t.info.state, "success")) {
			if (c->progress)
				c->progress(c->progress_opaque, what, 100);
			if (result)
				*result = t.info.result;
			return 0;
		}
		if (!strcmp(t.info.state, "error")) {
			char desc[1024];

			vs_copy(t.info.fault.method, sizeof(t.info.fault.method),
				what);
			vs_fault_record(&t.info.fault);
			vs_fault_describe(&t.info.fault, desc, sizeof(desc));
			return fy_err_set(vs_fault_errno(t.info.fault.type),
					  "%s failed (task %s): %s", what,
					  task->value, desc);
		}
		if (fy_now() >= deadline) {
			if (t.info.progress >= 0)
				return fy_err_set(-ETIMEDOUT, "%s (task %s) still "
						  "running after %d s at %d%%; "
						  "left running", what,
						  task->value, timeout_s,
						  t.info.progress);
			return fy_err_set(-ETIMEDOUT, "%s (task %s) still running "
					  "after %d s; left running", what,
					  task->value, timeout_s);
		}
		vs_sleep_ms(delay_ms);
		if (delay_ms < 2000)
			delay_ms *= 2;
	}
}

/* Calls a *_Task method and waits for it. */
static int run_task(struct fy_vs_client *c, const char *method,
		    const struct fy_vs_moref *this, const char *body,
		    const char *what, struct fy_vs_moref *result)
{
	struct fy_vs_moref task;
	struct vs_reply r;
	char desc[256];
	int rc;

	rc = vs_call(c, method, NULL, this, body, what, &r);
	if (rc < 0)
		return rc;
	rc = vs_node_moref(r.returnval, &task);
	vs_reply_release(&r);
	if (rc < 0 || !task.value[0])
		return fy_err_set(-EBADMSG, "%s on %s returned no task", method,
				  what);
	snprintf(desc, sizeof(desc), "%s on %s", method, what);
	return fy_vs_task_wait(c, &task, desc, 0, result);
}

/* ---- snapshots --------------------------------------------------------- */

int fy_vs_snapshot_create(struct fy_vs_client *c,
			  const struct fy_vs_moref *vmref,
			  const struct fy_vs_snapshot_opts *opts,
			  struct fy_vs_moref *snapshot)
{
	struct fy_vs_moref vmm = vs_typed(vmref, "VirtualMachine");
	const struct fy_vs_moref *vm = &vmm;
	char name[80], desc[1024];
	struct fy_vs_moref result;
	struct vs_buf b;
	int rc;

	vs_fault_clear();
	if (opts->name) {
		snprintf(name, sizeof(name), "%s", opts->name);
	} else {
		time_t now = time(NULL);
		struct tm tm;

		gmtime_r(&now, &tm);
		strftime(name, sizeof(name), "ferry-%Y%m%dT%H%M%SZ", &tm);
	}
	snprintf(desc, sizeof(desc), "%s %s", FY_VS_SNAPSHOT_TAG,
		 opts->description ? opts->description : "backup snapshot");
	vs_buf_init(&b, BODY_MAX);
	vs_buf_elem(&b, "name", name);
	vs_buf_elem(&b, "description", desc);
	vs_buf_printf(&b, "<memory>%s</memory><quiesce>%s</quiesce>",
		      opts->memory ? "true" : "false",
		      opts->quiesce ? "true" : "false");
	rc = b.err ? fy_err_set(b.err, "snapshot request too large")
		   : run_task(c, "CreateSnapshot_Task", vm, b.data, vm->value,
			      &result);
	vs_buf_release(&b);
	if (rc < 0)
		return rc;
	if (!result.value[0])
		return fy_err_set(-EBADMSG, "CreateSnapshot_Task on %s succeeded "
				  "but named no snapshot", vm->value);
	if (!result.type[0])
		snprintf(result.type, sizeof(result.type),
			 "VirtualMachineSnapshot");
	*snapshot = result;
	fy_info("vsphere: snapshot %s (%s) of %s created%s%s", name,
		result.value, vm->value, opts->quiesce ? ", quiesced" : "",
		opts->memory ? ", with memory" : "");
	return 0;
}

int fy_vs_snapshot_remove(struct fy_vs_client *c,
			  const struct fy_vs_moref *snapshot)
{
	struct fy_vs_moref m = *snapshot;

	vs_fault_clear();
	if (!m.type[0])
		snprintf(m.type, sizeof(m.type), "VirtualMachineSnapshot");
	return run_task(c, "RemoveSnapshot_Task", &m,
			"<removeChildren>false</removeChildren>"
			"<consolidate>true</consolidate>",
			m.value, NULL);
}

int fy_vs_vm_consolidate(struct fy_vs_client *c,
			 const struct fy_vs_moref *vmref)
{
	struct fy_vs_moref vmm = vs_typed(vmref, "VirtualMachine");
	const struct fy_vs_moref *vm = &vmm;

	vs_fault_clear();
	return run_task(c, "ConsolidateVMDisks_Task", vm, NULL, vm->value, NULL);
}

/* ---- reading a VM's devices alone -------------------------------------- */

struct dev_read {
	struct fy_vs_devices d;
	struct vs_arena arena;
	bool cbt;
	bool found;
};

static int dev_object(void *opaque, const struct vs_node *o)
{
	struct dev_read *x = opaque;
	const struct vs_node *v = vs_prop(o, "config.changeTrackingEnabled");

	x->found = true;
	x->cbt = v && !strcmp(v->text, "true");
	return vs_parse_devices(vs_prop(o, "config.hardware.device"),
				&x->arena, &x->d);
}

static int read_devices(struct fy_vs_client *c, const struct fy_vs_moref *vm,
			struct dev_read *x)
{
	static const char *const paths[] = { "config.hardware.device",
					     "config.changeTrackingEnabled",
					     NULL };
	struct vs_prop_spec spec = { "VirtualMachine", paths };
	int rc;

	memset(x, 0, sizeof(*x));
	vs_arena_init(&x->arena, 0);
	rc = vs_retrieve(c, vm, false, &spec, 1, dev_object, x);
	if (rc == 0 && !x->found)
		rc = fy_err_set(-ENOENT, "no virtual machine %s", vm->value);
	return rc;
}

/* ---- changed block tracking -------------------------------------------- */

int fy_vs_cbt_set(struct fy_vs_client *c, const struct fy_vs_moref *vmref,
		  bool enabled)
{
	struct fy_vs_moref vmm = vs_typed(vmref, "VirtualMachine");
	const struct fy_vs_moref *vm = &vmm;
	struct dev_read x;
	char body[160];
	int rc;

	vs_fault_clear();
	snprintf(body, sizeof(body),
		 "<spec><changeTrackingEnabled>%s</changeTrackingEnabled></spec>",
		 enabled ? "true" : "false");
	rc = run_task(c, "ReconfigVM_Task", vm, body, vm->value, NULL);
	if (rc < 0)
		return rc;
	rc = read_devices(c, vm, &x);
	if (rc == 0 && x.cbt != enabled)
		rc = fy_err_set(-EIO, "ReconfigVM_Task on %s reported success "
				"but changeTrackingEnabled is still %s",
				vm->value, x.cbt ? "true" : "false");
	vs_arena_release(&x.arena);
	return rc;
}

int fy_vs_changed_areas(struct fy_vs_client *c,
			const struct fy_vs_moref *vmref,
			const struct fy_vs_moref *snapshot, int32_t device_key,
			uint64_t capacity, const char *change_id,
			fy_vs_area_cb cb, void *opaque)
{
	struct fy_vs_moref vmm = vs_typed(vmref, "VirtualMachine");
	const struct fy_vs_moref *vm = &vmm;
	struct fy_vs_moref snap = { "", "" };
	uint64_t offset = 0, prev;
	unsigned calls = 0;
	char what[512];
	int rc = 0;

	vs_fault_clear();
	/* No snapshot: the live disk, which vSphere answers for a
	 * powered-off VM only. */
	if (snapshot)
		snap = *snapshot;
	if (snapshot && !snap.type[0])
		snprintf(snap.type, sizeof(snap.type), "VirtualMachineSnapshot");
	if (snapshot)
		snprintf(what, sizeof(what), "%s disk %d of snapshot %s",
			 vm->value, (int)device_key, snap.value);
	else
		snprintf(what, sizeof(what), "%s disk %d (no snapshot)",
			 vm->value, (int)device_key);
	while (offset < capacity) {
		struct vs_change_info ci;
		const struct vs_node *a;
		struct vs_reply r;
		struct vs_buf b;
		uint64_t end;

		if (++calls > AREA_CALLS_MAX)
			return fy_err_set(-EPROTO, "QueryChangedDiskAreas on %s: "
					  "no end after %u calls", what, calls);
		vs_buf_init(&b, 4096);
		if (snapshot)
			vs_buf_moref(&b, "snapshot", &snap);
		vs_buf_printf(&b, "<deviceKey>%d</deviceKey>"
			      "<startOffset>%llu</startOffset>",
			      (int)device_key, (unsigned long long)offset);
		vs_buf_elem(&b, "changeId", change_id);
		rc = b.err ? fy_err_set(b.err, "change ID too long")
			   : vs_call(c, "QueryChangedDiskAreas", NULL, vm,
				     b.data, what, &r);
		vs_buf_release(&b);
		if (rc < 0)
			return rc;
		rc = vs_parse_change_info(r.returnval, &ci);
		if (rc < 0) {
			vs_reply_release(&r);
			return fy_err_wrap(rc, "QueryChangedDiskAreas on %s", what);
		}
		end = ci.start + ci.length;
		/* The answer must cover the offset asked for and move on,
		 * or the loop would skip data or never end. */
		if (ci.start > offset || end <= offset) {
			vs_reply_release(&r);
			return fy_err_set(-EPROTO, "QueryChangedDiskAreas on %s "
					  "asked from %llu, answered %llu+%llu",
					  what, (unsigned long long)offset,
					  (unsigned long long)ci.start,
					  (unsigned long long)ci.length);
		}
		prev = ci.start;
		for (a = ci.first_area; a && rc == 0; a = vs_next_same(a)) {
			int64_t si = vs_child_i64(a, "start", -1);
			int64_t li = vs_child_i64(a, "length", -1);
			uint64_t sa, e;

			/* In order, not overlapping, no wrap-around: a
			 * rollback writes only these areas, so a malformed
			 * answer must not silently drop one. */
			if (si < 0 || li < 0 ||
			    (uint64_t)si > UINT64_MAX - (uint64_t)li ||
			    (uint64_t)si < prev) {
				rc = fy_err_set(-EPROTO, "QueryChangedDiskAreas "
						"on %s: area %lld+%lld is negative, "
						"wraps or is out of order", what,
						(long long)si, (long long)li);
				break;
			}
			sa = (uint64_t)si;
			e = sa + (uint64_t)li;
			prev = e;
			/* Clip to what this call covers beyond what earlier
			 * calls did, and to the disk. */
			if (sa < offset)
				sa = offset;
			if (e > end)
				e = end;
			if (e > capacity)
				e = capacity;
			if (e > sa)
				rc = cb(opaque, sa, e - sa);
		}
		vs_reply_release(&r);
		if (rc < 0)
			return rc;
		offset = end;
	}
	return 0;
}

struct collect {
	struct fy_vs_areas *a;
	size_t cap;
};

static int collect_area(void *opaque, uint64_t start, uint64_t length)
{
	struct collect *x = opaque;
	struct fy_vs_areas *a = x->a;

	a->bytes += length;
	if (a->n && a->areas[a->n - 1].start + a->areas[a->n - 1].length ==
			    start) {
		a->areas[a->n - 1].length += length;
		return 0;
	}
	if (a->n == x->cap) {
		size_t cap = x->cap ? x->cap * 2 : 256;
		struct fy_vs_area *p;

		if (a->n >= AREAS_MAX)
			return fy_err_set(-E2BIG, "more than %u separate changed "
					  "areas; use fy_vs_changed_areas",
					  AREAS_MAX);
		p = realloc(a->areas, cap * sizeof(*p));
		if (!p)
			return fy_err_set(-ENOMEM, "out of memory");
		a->areas = p;
		x->cap = cap;
	}
	a->areas[a->n].start = start;
	a->areas[a->n].length = length;
	a->n++;
	return 0;
}

int fy_vs_changed_areas_get(struct fy_vs_client *c,
			    const struct fy_vs_moref *vm,
			    const struct fy_vs_moref *snapshot,
			    int32_t device_key, uint64_t capacity,
			    const char *change_id, struct fy_vs_areas **out)
{
	struct collect x;
	int rc;

	*out = NULL;
	x.cap = 0;
	x.a = calloc(1, sizeof(*x.a));
	if (!x.a)
		return fy_err_set(-ENOMEM, "out of memory");
	rc = fy_vs_changed_areas(c, vm, snapshot, device_key, capacity,
				 change_id, collect_area, &x);
	if (rc < 0) {
		fy_vs_areas_free(x.a);
		return rc;
	}
	*out = x.a;
	return 0;
}

void fy_vs_areas_free(struct fy_vs_areas *a)
{
	if (!a)
		return;
	free(a->areas);
	free(a);
}

/* ---- adding and removing disks ----------------------------------------- */

/* vSphere reserves unit 7 on every SCSI controller for the controller
 * itself (own_unit says which, normally 7). */
static bool unit_free(const struct fy_vs_controller *ct, int unit)
{
	return unit != 7 && unit != ct->own_unit &&
	       !(ct->used_units & (1u << unit));
}

static int pick_slot(const struct fy_vs_devices *d, int32_t *ckey,
		     int32_t *unit)
{
	const struct fy_vs_controller *best = NULL;
	int best_unit = -1, u;
	size_t i;

	for (i = 0; i < d->n_controllers; i++) {
		const struct fy_vs_controller *ct = &d->controllers[i];

		if (ct->kind != FY_VS_CTRL_SCSI || (*ckey >= 0 && ct->key != *ckey))
			continue;
		for (u = 0; u < 16; u++) {
			if ((*unit >= 0 && u != *unit) || !unit_free(ct, u))
				continue;
			/* The lowest bus with room, so that attached disks
			 * gather on one controller. */
			if (!best || ct->bus < best->bus) {
				best = ct;
				best_unit = u;
			}
			break;
		}
	}
	if (!best)
		return -ENOSPC;
	*ckey = best->key;
	*unit = best_unit;
	return 0;
}

int fy_vs_vm_add_disk(struct fy_vs_client *c, const struct fy_vs_moref *vmref,
		      const struct fy_vs_disk_attach *a,
		      struct fy_vs_attached *out)
{
	struct fy_vs_moref vmm = vs_typed(vmref, "VirtualMachine");
	const struct fy_vs_moref *vm = &vmm;
	const char *mode = a->disk_mode ? a->disk_mode : "independent_nonpersistent";
	int32_t ckey = a->controller_key, unit = a->unit;
	struct dev_read x;
	struct vs_buf b;
	size_t i;
	int rc;

	vs_fault_clear();
	memset(out, 0, sizeof(*out));
	vs_buf_init(&b, BODY_MAX);
	/* Two reconfigures that pick the same free slot at once fail with
	 * "Invalid configuration for device": one at a time per client. */
	pthread_mutex_lock(&c->reconfig_lock);
	rc = read_devices(c, vm, &x);
	if (rc < 0)
		goto out;
	if (ckey < 0 || unit < 0) {
		int32_t want_unit = unit;

		rc = pick_slot(&x.d, &ckey, &want_unit);
		if (rc < 0) {
			size_t n = 0;

			for (i = 0; i < x.d.n_controllers; i++)
				n += x.d.controllers[i].kind == FY_VS_CTRL_SCSI;
			rc = fy_err_set(-ENOSPC, "attach of %s to %s: no free "
					"SCSI slot on %zu controller(s)",
					a->file_name, vm->value, n);
			goto out;
		}
		unit = want_unit;
	}
	vs_buf_str(&b, "<spec><deviceChange><operation>add</operation>"
		   "<device xsi:type=\"VirtualDisk\"><key>-100</key>"
		   "<backing xsi:type=\"VirtualDiskFlatVer2BackingInfo\">");
	vs_buf_elem(&b, "fileName", a->file_name);
	vs_buf_elem(&b, "diskMode", mode);
	vs_buf_printf(&b, "</backing><controllerKey>%d</controllerKey>"
		      "<unitNumber>%d</unitNumber><capacityInKB>0</capacityInKB>"
		      "</device></deviceChange></spec>",
		      (int)ckey, (int)unit);
	if (b.err) {
		rc = fy_err_set(b.err, "reconfigure request too large");
		goto out;
	}
	vs_arena_release(&x.arena);
	rc = run_task(c, "ReconfigVM_Task", vm, b.data, vm->value, NULL);
	if (rc < 0) {
		rc = fy_err_wrap(rc, "attach of %s to %s", a->file_name,
				 vm->value);
		goto out;
	}
	/* Read back: the disk must be where we put it. */
	rc = read_devices(c, vm, &x);
	if (rc < 0)
		goto out;
	for (i = 0; i < x.d.n_disks; i++) {
		const struct fy_vs_disk *d = &x.d.disks[i];

		if (!strcmp(d->file_name, a->file_name) &&
		    d->controller_key == ckey && d->unit == unit) {
			out->key = d->key;
			out->controller_key = d->controller_key;
			out->unit = d->unit;
			out->capacity = d->capacity;
			snprintf(out->uuid, sizeof(out->uuid), "%s", d->uuid);
			break;
		}
	}
	if (i == x.d.n_disks)
		rc = fy_err_set(-EIO, "ReconfigVM_Task on %s reported success "
				"but %s is not on controller %d unit %d when the "
				"devices are read back", vm->value, a->file_name,
				(int)ckey, (int)unit);
	else
		fy_info("vsphere: attached %s to %s as device %d (controller %d "
			"unit %d)", a->file_name, vm->value, (int)out->key,
			(int)ckey, (int)unit);
out:
	pthread_mutex_unlock(&c->reconfig_lock);
	vs_arena_release(&x.arena);
	vs_buf_release(&b);
	return rc;
}

int fy_vs_vm_remove_disk(struct fy_vs_client *c,
			 const struct fy_vs_moref *vmref, int32_t device_key)
{
	struct fy_vs_moref vmm = vs_typed(vmref, "VirtualMachine");
	const struct fy_vs_moref *vm = &vmm;
	const struct fy_vs_disk *d;
	struct dev_read x;
	struct vs_buf b;
	char file[1024];
	int rc;

	vs_fault_clear();
	vs_buf_init(&b, BODY_MAX);
	pthread_mutex_lock(&c->reconfig_lock);
	rc = read_devices(c, vm, &x);
	if (rc < 0)
		goto out;
	d = fy_vs_devices_disk(&x.d, device_key);
	if (!d) {
		rc = fy_err_set(-ENOENT, "%s has no disk with device key %d",
				vm->value, (int)device_key);
		goto out;
	}
	snprintf(file, sizeof(file), "%s", d->file_name);
	/* No fileOperation: "destroy" would delete the VMDK, which belongs
	 * to the VM being backed up. */
	vs_buf_printf(&b, "<spec><deviceChange><operation>remove</operation>"
		      "<device xsi:type=\"VirtualDisk\"><key>%d</key>"
		      "<backing xsi:type=\"%s\">", (int)d->key,
		      d->chain_len ? d->chain[0].type
				   : "VirtualDiskFlatVer2BackingInfo");
	vs_buf_elem(&b, "fileName", d->file_name);
	vs_buf_elem(&b, "diskMode", d->disk_mode[0] ? d->disk_mode
						     : "persistent");
	vs_buf_printf(&b, "</backing><controllerKey>%d</controllerKey>"
		      "<unitNumber>%d</unitNumber>"
		      "<capacityInKB>%llu</capacityInKB></device></deviceChange>"
		      "</spec>", (int)d->controller_key, (int)d->unit,
		      (unsigned long long)(d->capacity / 1024));
	vs_arena_release(&x.arena);
	if (b.err) {
		rc = fy_err_set(b.err, "reconfigure request too large");
		goto out;
	}
	rc = run_task(c, "ReconfigVM_Task", vm, b.data, vm->value, NULL);
	if (rc < 0) {
		rc = fy_err_wrap(rc, "detach of %s from %s", file, vm->value);
		goto out;
	}
	rc = read_devices(c, vm, &x);
	if (rc < 0)
		goto out;
	if (fy_vs_devices_disk(&x.d, device_key))
		rc = fy_err_set(-EIO, "ReconfigVM_Task on %s reported success "
				"but disk %d (%s) is still there when the devices "
				"are read back", vm->value, (int)device_key, file);
	else
		fy_info("vsphere: detached %s (device %d) from %s", file,
			(int)device_key, vm->value);
out:
	pthread_mutex_unlock(&c->reconfig_lock);
	vs_arena_release(&x.arena);
	vs_buf_release(&b);
	return rc;
}

int fy_vs_vm_relocate(struct fy_vs_client *c, const struct fy_vs_moref *vmref,
		      const struct fy_vs_moref *datastore)
{
	struct fy_vs_moref vmm = vs_typed(vmref, "VirtualMachine");
	const struct fy_vs_moref *vm = &vmm;
	struct fy_vs_moref ds = *datastore;
	struct vs_buf b;
	int rc;

	vs_fault_clear();
	if (!ds.type[0])
		snprintf(ds.type, sizeof(ds.type), "Datastore");
	vs_buf_init(&b, 4096);
	vs_buf_str(&b, "<spec>");
	vs_buf_moref(&b, "datastore", &ds);
	vs_buf_str(&b, "</spec>");
	rc = b.err ? fy_err_set(b.err, "relocate request too large")
		   : run_task(c, "RelocateVM_Task", vm, b.data, vm->value, NULL);
	vs_buf_release(&b);
	return rc;
}
