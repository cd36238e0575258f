/*
 * The startup self-cleanup: VixDiskLib_Cleanup's job done from Ferry's own
 * journal. Disks first (a snapshot cannot be consolidated while its frozen
 * disk is attached to the proxy), then snapshots, then disabled methods.
 */
#include "hotadd/hotadd.h"
#include "hotadd/hotadd_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void say(struct fy_hotadd_cleanup_report *rep, bool cleaned,
		const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void say(struct fy_hotadd_cleanup_report *rep, bool cleaned,
		const char *fmt, ...)
{
	size_t used = strlen(rep->log);
	char line[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (cleaned)
		rep->cleaned++;
	else
		rep->remaining++;
	fy_log(cleaned ? FY_LOG_INFO : FY_LOG_WARN, "cleanup: %s", line);
	if (used + strlen(line) + 2 < sizeof(rep->log))
		snprintf(rep->log + used, sizeof(rep->log) - used, "%s\n",
			 line);
}

/* Whether the agent that wrote an entry still runs: its pid is alive and
 * is a ferry-agent (a reused pid of another program does not count). This
 * process's own entries belong to a dead process whose pid was reused,
 * unless the service says they are its running jobs'. */
static bool writer_alive(bool own_live, int32_t pid)
{
	if (pid == getpid())
		return own_live;
	return ha_pid_is_agent(pid);
}

/* A VM a dead restore created: destroyed when it is still what the
 * restore made (its name, powered off); else left and named. 0 when the
 * entry can go. */
static int clean_restore(struct fy_vs_client *vc,
			 const struct fy_journal_entry *e,
			 struct fy_hotadd_cleanup_report *rep)
{
	struct fy_vs_moref m = { "VirtualMachine", "" };
	struct fy_vs_vm *vm = NULL;
	int rc;

	snprintf(m.value, sizeof(m.value), "%s", e->vm);
	rc = fy_vs_vm_get(vc, &m, &vm);
	if (rc == -ENOENT) {
		say(rep, true, "the half-restored VM %s (%s) is gone already",
		    e->file, e->vm);
		return 0;
	}
	if (rc < 0) {
		say(rep, false, "half-restored VM %s (%s): %s", e->file, e->vm,
		    fy_err_msg());
		return rc;
	}
	if (!fy_vs_name_equal(vm->name, e->file)) {
		say(rep, false, "half-restored VM %s (%s) is now named %s: "
		    "left for the admin to check and delete", e->file, e->vm,
		    vm->name);
		fy_vs_vm_free(vm);
		return -EEXIST;
	}
	if (strcmp(vm->power_state, "poweredOff")) {
		say(rep, false, "half-restored VM %s (%s) is %s: its disks "
		    "were not all written; left for the admin to delete",
		    e->file, e->vm, vm->power_state);
		fy_vs_vm_free(vm);
		return -EBUSY;
	}
	fy_vs_vm_free(vm);
	rc = fy_vs_vm_destroy(vc, &m);
	if (rc < 0) {
		say(rep, false, "destroying the half-restored VM %s (%s): %s",
		    e->file, e->vm, fy_err_msg());
		return rc;
	}
	say(rep, true, "destroyed the half-restored VM %s (%s) that a "
	    "crashed restore left", e->file, e->vm);
	return 0;
}

static const struct fy_journal_entry *
find_attach(const struct fy_journal *j, const char *proxy,
	    const struct fy_vs_disk *d)
{
	size_t i;

	for (i = 0; i < j->n; i++) {
		const struct fy_journal_entry *e = &j->entries[i];

		if (e->kind == FY_JOURNAL_ATTACH && !strcmp(e->vm, proxy) &&
		    (e->device_key == d->key || e->device_key == -1) &&
		    !strcmp(e->file, d->file_name))
			return e;
	}
	return NULL;
}

static void clean_disks(struct fy_hotadd *h, const struct fy_journal *j,
			struct fy_hotadd_cleanup_report *rep)
{
	struct fy_vs_vm *pv = NULL;
	size_t i, k;

	if (fy_vs_vm_get(h->vc, &h->proxy, &pv) < 0) {
		say(rep, false, "proxy %s: cannot read its disks: %s",
		    h->proxy.value, fy_err_msg());
		return;
	}
	for (i = 0; i < pv->devices.n_disks; i++) {
		const struct fy_vs_disk *d = &pv->devices.disks[i];
		const struct fy_journal_entry *e = find_attach(j, h->proxy.value,
							       d);
		char wwid[80], block[64];
		bool saw_wwid, found;

		if (ha_is_own(j, h->proxy.value, d->key, d->file_name))
			continue;
		if (!e && !ha_looks_attached(pv, d))
			continue;
		if (e && writer_alive(h->own_entries_live, e->pid)) {
			say(rep, false, "disk %s on proxy %s: in use by the "
			    "running agent pid %d", d->file_name,
			    h->proxy.value, e->pid);
			continue;
		}
		ha_wwid_of_uuid(d->uuid, wwid, sizeof(wwid));
		saw_wwid = false;
		found = d->uuid[0] && ha_find_block(h, wwid, block,
						    sizeof(block),
						    &saw_wwid) == 0;
		/* A guest without wwids: where the disk sits tells it. */
		if (!found && !saw_wwid && d->controller >= 0)
			found = ha_find_block_at(
			    h, pv->devices.controllers[d->controller].pci_slot,
			    d->unit, block, sizeof(block)) == 0;
		if (found && ha_guest_remove(h, block, d->uuid) < 0) {
			say(rep, false, "disk %s: cannot remove %s from the "
			    "guest: %s", d->file_name, block, fy_err_msg());
			continue;
		}
		if (ha_detach(h, d->key, d->file_name) < 0) {
			say(rep, false, "disk %s: %s", d->file_name,
			    fy_err_msg());
			continue;
		}
		ha_marker_set(h, d->uuid, false);
		if (e)
			fy_journal_remove(h->journal, e->id);
		say(rep, true, "detached %s (key %d) from proxy %s%s",
		    d->file_name, d->key, h->proxy.value,
		    e ? "" : " (not in the journal: a non-persistent disk "
			     "outside the proxy's folder)");
	}
	/* Journal entries whose disk is no longer on the proxy: detached by
	 * hand, or the crash came before the reconfigure. */
	for (k = 0; k < j->n; k++) {
		const struct fy_journal_entry *e = &j->entries[k];
		bool present = false;

		if (e->kind != FY_JOURNAL_ATTACH ||
		    strcmp(e->vm, h->proxy.value) ||
		    writer_alive(h->own_entries_live, e->pid))
			continue;
		if (ha_is_own(j, h->proxy.value, e->device_key, e->file)) {
			say(rep, false, "the journal says %s (key %d) was "
			    "attached, but it is one of the proxy's own disks: "
			    "refusing to detach it (entry %" PRIu64 " kept)",
			    e->file, e->device_key, e->id);
			continue;
		}
		for (i = 0; i < pv->devices.n_disks; i++)
			if (!strcmp(pv->devices.disks[i].file_name, e->file))
				present = true;
		if (present)
			continue;
		fy_journal_remove(h->journal, e->id);
		say(rep, true, "journal entry for %s cleared: the disk is no "
		    "longer attached to proxy %s", e->file, h->proxy.value);
	}
	fy_vs_vm_free(pv);
}

static int clean_snapshot(struct fy_vs_client *vc,
			  const struct fy_journal_entry *e,
			  struct fy_hotadd_cleanup_report *rep)
{
	struct fy_vs_moref vm = { "VirtualMachine", "" };
	struct fy_vs_vm *v = NULL;
	const struct fy_vs_snapshot *s = NULL;
	size_t i;
	int rc;

	snprintf(vm.value, sizeof(vm.value), "%s", e->vm);
	rc = fy_vs_vm_get(vc, &vm, &v);
	if (rc == -ENOENT) {
		say(rep, true, "snapshot %s of %s: the VM is gone", e->file,
		    e->vm);
		return 0;
	}
	if (rc < 0) {
		say(rep, false, "snapshot %s of %s: %s", e->file, e->vm,
		    fy_err_msg());
		return rc;
	}
	for (i = 0; i < v->n_snapshots; i++) {
		const struct fy_vs_snapshot *c = &v->snapshots[i];

		if (e->object[0] ? !strcmp(c->moref.value, e->object)
				 : (!strcmp(c->name, e->file) &&
				    fy_vs_snapshot_is_ferrys(c)))
			s = c;
	}
	if (s && (rc = fy_vs_snapshot_remove(vc, &s->moref)) < 0) {
		say(rep, false, "snapshot %s (%s) of %s: %s", s->name,
		    s->moref.value, v->name, fy_err_msg());
		fy_vs_vm_free(v);
		return rc;
	}
	if (s)
		say(rep, true, "removed snapshot %s (%s) of %s", s->name,
		    s->moref.value, v->name);
	fy_vs_vm_free(v);
	v = NULL;
	if (fy_vs_vm_get(vc, &vm, &v) == 0 && v->consolidation_needed) {
		if (fy_vs_vm_consolidate(vc, &vm) < 0) {
			say(rep, false, "%s needs consolidation, which "
			    "failed: %s", v->name, fy_err_msg());
			rc = -EIO;
		} else {
			say(rep, true, "consolidated the disks of %s",
			    v->name);
		}
	}
	fy_vs_vm_free(v);
	return rc;
}

/* Attach entries of dead agents that no proxy handle can undo here. */
static void attaches_remaining(const struct fy_journal *j, bool own_live,
			       const char *no_proxy,
			       struct fy_hotadd_cleanup_report *rep)
{
	size_t i;

	for (i = 0; i < j->n; i++) {
		const struct fy_journal_entry *e = &j->entries[i];

		if (e->kind != FY_JOURNAL_ATTACH || writer_alive(own_live, e->pid))
			continue;
		say(rep, false, "disk %s attached to proxy %s: cannot detach it "
		    "from here: %s", e->file, e->vm, no_proxy);
	}
}

int fy_journal_cleanup(struct fy_vs_client *vc, struct fy_journal_file *jf,
		       struct fy_hotadd *h, const char *no_proxy,
		       bool own_live, struct fy_hotadd_cleanup_report *rep)
{
	struct fy_journal j;
	size_t i;
	int rc;

	memset(rep, 0, sizeof(*rep));
	rc = fy_journal_read(jf, &j);
	if (rc < 0)
		return rc;
	/* Disks first: a snapshot cannot be consolidated while its frozen
	 * disk is still attached. */
	if (h) {
		h->own_entries_live = own_live;
		clean_disks(h, &j, rep);
	}
	else
		attaches_remaining(&j, own_live,
				   no_proxy ? no_proxy : "no proxy", rep);
	for (i = 0; i < j.n; i++) {
		const struct fy_journal_entry *e = &j.entries[i];

		if (e->kind != FY_JOURNAL_SNAPSHOT)
			continue;
		if (writer_alive(own_live, e->pid)) {
			say(rep, false, "snapshot %s of %s: in use by the "
			    "running agent pid %d", e->file, e->vm, e->pid);
			continue;
		}
		if (clean_snapshot(vc, e, rep) == 0)
			fy_journal_remove(jf, e->id);
	}
	for (i = 0; i < j.n; i++) {
		const struct fy_journal_entry *e = &j.entries[i];
		struct fy_vs_moref vm = { "VirtualMachine", "" };

		if (e->kind != FY_JOURNAL_DISABLE)
			continue;
		if (writer_alive(own_live, e->pid)) {
			say(rep, false, "methods disabled on %s: in use by "
			    "the running agent pid %d", e->vm, e->pid);
			continue;
		}
		snprintf(vm.value, sizeof(vm.value), "%s", e->vm);
		if (fy_vs_end_access(vc, &vm, e->file) < 0) {
			say(rep, false, "re-enabling methods on %s (%s): %s",
			    e->vm, e->file, fy_err_msg());
			continue;
		}
		fy_journal_remove(jf, e->id);
		say(rep, true, "re-enabled the methods %s disabled on %s",
		    e->file, e->vm);
	}
	/* What the steps above could not undo is still in the journal: a
	 * VM whose disk is still attached to the proxy is not destroyed
	 * (its disk would go with it while the proxy holds it). */
	fy_journal_release(&j);
	rc = fy_journal_read(jf, &j);
	if (rc < 0)
		return rc;
	for (i = 0; i < j.n; i++) {
		const struct fy_journal_entry *e = &j.entries[i];
		size_t k;

		if (e->kind != FY_JOURNAL_RESTORE)
			continue;
		for (k = 0; k < j.n; k++)
			if (j.entries[k].kind == FY_JOURNAL_ATTACH &&
			    j.entries[k].pid == e->pid)
				break;
		if (k < j.n) {
			say(rep, false, "half-restored VM %s (%s): a disk the "
			    "restore attached (%s) is still on the proxy; "
			    "left until it is detached", e->file, e->vm,
			    j.entries[k].file);
			continue;
		}
		if (writer_alive(own_live, e->pid)) {
			say(rep, false, "VM %s (%s): being restored by the "
			    "running agent pid %d", e->file, e->vm, e->pid);
			continue;
		}
		if (clean_restore(vc, e, rep) == 0)
			fy_journal_remove(jf, e->id);
	}
	fy_journal_release(&j);
	return 0;
}

int fy_hotadd_cleanup(struct fy_hotadd *h,
		      struct fy_hotadd_cleanup_report *rep)
{
	return fy_journal_cleanup(h->vc, h->journal, h, NULL,
				  h->own_entries_live, rep);
}

void fy_hotadd_cleanup_own(struct fy_hotadd *h, bool live)
{
	h->own_entries_live = live;
}
