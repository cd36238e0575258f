/*
 * The whole-VM restore (docs/RESTORE.md):
 *
 *   ferry-agent restore-vm --config FILE BACKUP --name NEW
 *        [--datastore DS] [--host H | --resource-pool PATH] [--folder PATH]
 *        [--network OLD=NEW ...] [--disk-provisioning thin|thick|same]
 *        [--keep-mac] [--power-on] [--transport LIST] [--json]
 *
 * Reads the backup's VM configuration record, creates the VM with that
 * hardware (CreateVM_Task; new, empty disks of the recorded sizes; new MAC
 * addresses unless --keep-mac), writes every backed-up disk, and powers
 * the VM on when asked. It never touches an existing VM: a name in use is
 * refused before anything is created. When anything fails after the VM
 * was created, the half-restored VM is destroyed, and named in the error
 * when even that fails.
 *
 * Writing disks, by the first mode of the list that can here: "hotadd"
 * (each new disk attached to this proxy VM persistent, written through
 * the guest's block device with O_DIRECT, holes skipped, detached; the
 * attach journaled as a backup's), "https" (one PUT of each flat file
 * through the datastore's /folder access, every byte, holes as zeros).
 * "nbdssl"/"nbd" (VDDK's NBD modes: nbdkit's vddk plugin started writable
 * for each disk, written over NBD from this machine, holes skipped on a
 * new disk, flushed at the end; nbd/vddk.c). The created VM is journaled
 * until its disks are written, so that the self-cleanup destroys what a
 * dead agent left.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "agent/job.h"
#include "agent/transport.h"
#include "hotadd/hotadd.h"
#include "nbd/nbd.h"
#include "image/image.h"
#include "vsphere/vsphere.h"

#define RV_DEFAULT_TRANSPORTS "hotadd:https"

/* What the job thread passes around. */
struct rv {
	const struct fy_restore_vm_spec *sp;
	atomic_bool *cancel;
	const struct fy_job_events *ev;
	struct fy_job_result *res;
	unsigned disk, n_disks;       /* the one being written */
	double disk_t0;
	char transport[16];           /* the mode the disks are written by */
	struct fy_hotadd *h;          /* hotadd: this proxy */
	bool vddk;                    /* nbdssl/nbd: VDDK through nbdkit */
	const struct fy_config *cfg;
	bool https_next;              /* hotadd, then https in the list */
	bool attached_left;           /* a detach failed: a disk is still on
				       * the proxy */
};

static void phase(struct rv *x, const char *name, const char *detail)
{
	if (x->ev && x->ev->phase)
		x->ev->phase(x->ev->opaque, name, detail ? detail : "");
}

static bool cancelled(struct rv *x)
{
	return x->cancel && atomic_load(x->cancel);
}

/* ---- the backup and its record ----------------------------------------- */

/* A backup's disk, by its position in the backup (what GetMap names). */
struct backup_disk {
	uint32_t index;          /* the VM's disk index when it was backed up */
	uint64_t size;
	char disk_id[128];       /* the disk's UUID then */
	char change_id[128];     /* its CBT change ID then, or "" */
	char label[512];
};

struct find_backup {
	const char *id;
	struct fy_vmconfig *record;
	char source[512];
	char kind[32];
	struct backup_disk disks[FY_VMCONFIG_DISKS_MAX];
	size_t n_disks;
	bool found;
	int rc;
};

static int find_backup_cb(void *opaque, const Ferry__BackupSummary *b)
{
	struct find_backup *f = opaque;
	size_t i;

	if (f->found || strcmp(b->id, f->id))
		return 0;
	f->found = true;
	snprintf(f->source, sizeof(f->source), "%s", b->source);
	snprintf(f->kind, sizeof(f->kind), "%s", b->source_kind);
	if (b->n_disks > FY_VMCONFIG_DISKS_MAX)
		return f->rc = fy_err_set(-E2BIG, "backup %s has %zu disks",
					  b->id, b->n_disks);
	for (i = 0; i < b->n_disks; i++) {
		const Ferry__DiskSummary *d = b->disks[i];
		struct backup_disk *o = &f->disks[i];

		o->index = d->index;
		o->size = d->size;
		snprintf(o->disk_id, sizeof(o->disk_id), "%s", d->disk_id);
		snprintf(o->change_id, sizeof(o->change_id), "%s", d->change_id);
		snprintf(o->label, sizeof(o->label), "%s", d->label);
	}
	f->n_disks = b->n_disks;
	if (!b->vm_config.len)
		return 0;
	/* The bytes come from the repository: decoded with every bound. */
	f->rc = fy_vmconfig_decode(b->vm_config.data, b->vm_config.len,
				   &f->record);
	return 0;
}

static int load_backup(struct fy_conn *conn, const char *id,
		       bool need_record, struct find_backup *f)
{
	int rc;

	f->id = id;
	rc = fy_client_list_one(conn, true, id, find_backup_cb, f);
	if (rc == 0)
		rc = f->rc;
	if (rc < 0)
		return rc;
	if (!f->found)
		return fy_err_set(-ENOENT, "no backup %s that this certificate "
				  "may read", id);
	if (strcmp(f->kind, "vm"))
		return fy_err_set(-EINVAL, "backup %s is of a %s, not a VM: "
				  "restore its disks with ferry restore", id,
				  f->kind);
	if (!need_record)
		return 0;
	if (!f->record)
		return fy_err_set(-ENOENT, "backup %s has no VM configuration "
				  "record (it was made before Ferry recorded "
				  "one): restore its disks with ferry restore",
				  id);
	if (f->record->newer)
		return fy_err_set(-ENOTSUP, "backup %s's VM record is of "
				  "version %u, made by a newer Ferry", id,
				  f->record->version);
	return 0;
}

/* ---- the new VM's hardware from the record ------------------------------ */

struct rv_build {
	struct fy_vs_new_vm vm;
	struct fy_vs_new_controller controllers[FY_VMCONFIG_CONTROLLERS_MAX];
	struct fy_vs_new_disk disks[FY_VMCONFIG_DISKS_MAX];
	const struct fy_vmconfig_disk *from[FY_VMCONFIG_DISKS_MAX];
	struct fy_vs_new_nic nics[FY_VMCONFIG_NICS_MAX];
	struct fy_vs_new_cdrom cdroms[FY_VMCONFIG_CDROMS_MAX];
	struct fy_vs_option extra[FY_VMCONFIG_EXTRA_MAX];
};

__attribute__((format(printf, 2, 3)))
static void note(struct fy_job_result *res, const char *fmt, ...)
{
	size_t n = strlen(res->notes);
	char line[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	fy_info("restore-vm: %s", line);
	snprintf(res->notes + n, sizeof(res->notes) - n, "%s%s",
		 n ? "; " : "", line);
}

static const struct fy_vmconfig_controller *
record_controller(const struct fy_vmconfig *c, int32_t key)
{
	size_t i;

	for (i = 0; i < c->n_controllers; i++)
		if (c->controllers[i].key == key)
			return &c->controllers[i];
	return NULL;
}

static const char *map_network(const struct fy_restore_vm_spec *sp, const char *old)
{
	size_t i, n = strlen(old);

	for (i = 0; i < sp->n_networks; i++)
		if (!strncmp(sp->networks[i], old, n) &&
		    sp->networks[i][n] == '=')
			return sp->networks[i] + n + 1;
	return old;
}

/* Every --network OLD=NEW names a network some NIC of the backup is on:
 * a mistyped OLD would leave that NIC on its old network unsaid. */
static int check_networks(const struct fy_restore_vm_spec *sp,
			  const struct fy_vmconfig *c)
{
	char have[512];
	size_t i, k, n, len;

	for (i = 0; i < sp->n_networks; i++) {
		n = (size_t)(strchr(sp->networks[i], '=') - sp->networks[i]);
		for (k = 0; k < c->n_nics; k++)
			if (strlen(c->nics[k].network) == n &&
			    !strncmp(c->nics[k].network, sp->networks[i], n))
				break;
		if (k < c->n_nics)
			continue;
		have[0] = '\0';
		for (k = 0, len = 0; k < c->n_nics && len < sizeof(have); k++)
			len += (size_t)snprintf(have + len, sizeof(have) - len,
						"%s\"%s\"", k ? ", " : "",
						c->nics[k].network);
		return fy_err_set(-EINVAL, "--network %s: no network adapter "
				  "of the backup is on network \"%.*s\" (its "
				  "adapters are on: %s)", sp->networks[i],
				  (int)n, sp->networks[i],
				  c->n_nics ? have : "none");
	}
	return 0;
}

static const char *provisioning(const struct fy_restore_vm_spec *sp,
				const struct fy_vmconfig_disk *d,
				struct fy_job_result *res)
{
	const char *p = d->provisioning;
	const char *want = sp->provisioning ? sp->provisioning : "same";

	if (!strcmp(want, "thin"))
		return "thin";
	if (!strcmp(want, "thick"))
		return strcmp(p, "thick-eager") ? "thick-lazy" : "thick-eager";
	if (strcmp(p, "thin") && strcmp(p, "thick-lazy") &&
	    strcmp(p, "thick-eager")) {
		note(res, "disk %d was recorded as %s: restored as a thin "
		     "flat disk", d->key, p);
		return "thin";
	}
	return p;
}

static int build_vm(const struct fy_vmconfig *c,
		    const struct fy_restore_vm_spec *sp,
		    struct rv_build *b, struct fy_job_result *res)
{
	size_t i;

	memset(b, 0, sizeof(*b));
	b->vm.name = sp->name;
	b->vm.guest_id = c->guest_id;
	b->vm.version = c->hardware_version;
	b->vm.firmware = c->firmware;
	b->vm.secure_boot = c->secure_boot;
	b->vm.cpus = c->cpus;
	b->vm.cores_per_socket = c->cores_per_socket;
	b->vm.memory_mb = c->memory_mb;
	b->vm.datastore = res->datastore;
	for (i = 0; i < c->n_controllers; i++) {
		const struct fy_vmconfig_controller *k = &c->controllers[i];
		struct fy_vs_new_controller *o =
			&b->controllers[b->vm.n_controllers];

		if (!strcmp(k->type, "other")) {
			note(res, "controller %d is of a kind this build does "
			     "not know: left out", k->key);
			continue;
		}
		o->key = k->key;
		o->type = k->type;
		o->bus = k->bus;
		o->sharing = k->sharing[0] ? k->sharing : NULL;
		b->vm.n_controllers++;
	}
	for (i = 0; i < c->n_disks; i++) {
		const struct fy_vmconfig_disk *d = &c->disks[i];
		const struct fy_vmconfig_controller *k =
			record_controller(c, d->controller_key);
		struct fy_vs_new_disk *o = &b->disks[b->vm.n_disks];

		if (!k || !strcmp(k->type, "other"))
			return fy_err_set(-ENOTSUP, "disk %d is on controller "
					  "%d, of a kind this build cannot "
					  "create", d->key, d->controller_key);
		o->key = d->key;
		o->controller_key = d->controller_key;
		o->unit = d->unit;
		o->capacity = d->capacity;
		o->provisioning = provisioning(sp, d, res);
		o->mode = d->mode;
		b->from[b->vm.n_disks++] = d;
	}
	for (i = 0; i < c->n_nics; i++) {
		const struct fy_vmconfig_nic *n = &c->nics[i];
		struct fy_vs_new_nic *o = &b->nics[b->vm.n_nics];

		if (!strcmp(n->adapter, "other") || !strcmp(n->adapter, "sriov")) {
			note(res, "network adapter %d (%s) is left out",
			     n->key, n->adapter);
			continue;
		}
		o->key = n->key;
		o->adapter = n->adapter;
		o->network = map_network(sp, n->network);
		o->mac = sp->keep_mac && n->mac[0] ? n->mac : NULL;
		b->vm.n_nics++;
	}
	for (i = 0; i < c->n_cdroms; i++) {
		const struct fy_vmconfig_cdrom *d = &c->cdroms[i];
		const struct fy_vmconfig_controller *k =
			record_controller(c, d->controller_key);

		if (!k || !strcmp(k->type, "other"))
			continue;
		b->cdroms[b->vm.n_cdroms].key = d->key;
		b->cdroms[b->vm.n_cdroms].controller_key = d->controller_key;
		b->cdroms[b->vm.n_cdroms].unit = d->unit;
		b->vm.n_cdroms++;
	}
	for (i = 0; i < c->n_extra; i++) {
		b->extra[i].key = (char *)c->extra[i].key;
		b->extra[i].value = (char *)c->extra[i].value;
	}
	b->vm.n_extra = c->n_extra;
	b->vm.controllers = b->controllers;
	b->vm.disks = b->disks;
	b->vm.nics = b->nics;
	b->vm.cdroms = b->cdroms;
	b->vm.extra = b->extra;
	return 0;
}

static enum fy_vs_controller_kind record_kind(const char *type)
{
	if (!strcmp(type, "ide"))
		return FY_VS_CTRL_IDE;
	if (!strcmp(type, "sata"))
		return FY_VS_CTRL_SATA;
	if (!strcmp(type, "nvme"))
		return FY_VS_CTRL_NVME;
	return FY_VS_CTRL_SCSI;
}

/* The new VM's disk that stands where the record's disk d stood: same
 * controller kind and bus, same unit. */
static const struct fy_vs_disk *new_disk(const struct fy_vs_vm *vm,
					 const struct fy_vmconfig *c,
					 const struct fy_vmconfig_disk *d)
{
	const struct fy_vmconfig_controller *k =
		record_controller(c, d->controller_key);
	size_t i, j;

	for (i = 0; k && i < vm->devices.n_disks; i++) {
		const struct fy_vs_disk *nd = &vm->devices.disks[i];

		if (nd->unit != (int32_t)d->unit)
			continue;
		for (j = 0; j < vm->devices.n_controllers; j++) {
			const struct fy_vs_controller *nk =
				&vm->devices.controllers[j];

			if (nk->key == nd->controller_key &&
			    nk->bus == (int32_t)k->bus &&
			    nk->kind == record_kind(k->type))
				return nd;
		}
	}
	return NULL;
}

/* ---- transports ---------------------------------------------------------- */

static int sink_pwritev(void *opaque, const struct iovec *iov, int iovcnt,
			uint64_t off)
{
	return fy_nbd_writer_pwritev(opaque, iov, iovcnt, off);
}

static int sink_flush(void *opaque)
{
	return fy_nbd_writer_flush(opaque);
}

/* Writes backup disk pos into the disk file of VM vm over VDDK's mode
 * x->transport: nbdkit's vddk plugin, writable, for that one disk. */
static int write_vddk(struct rv *x, struct fy_vs_client *vc,
		      struct fy_conn *conn, const struct fy_vs_moref *vm,
		      const char *file, uint64_t capacity, unsigned pos,
		      bool new_disk, const struct fy_restore_hooks *hooks,
		      uint64_t *written, uint64_t *zeros)
{
	struct fy_nbd_vddk_opts vo;
	struct fy_nbd_opts no;
	struct fy_nbd_writer *w = NULL;
	struct fy_restore_sink sink = { .pwritev = sink_pwritev,
					.flush = sink_flush, .name = file,
					.new_disk = new_disk };
	char thumb[64] = "";
	int rc;

	fy_nbd_vddk_opts_default(&vo);
	fy_nbd_opts_default(&no);
	if ((rc = fy_nbd_vddk_opts_from_config(&vo, x->cfg)) < 0 ||
	    (rc = fy_nbd_opts_from_config(&no, x->cfg)) < 0)
		return rc;
	/* VDDK checks the certificate Ferry's own policy accepted. */
	if (fy_vs_client_sha1_thumbprint(vc, thumb, sizeof(thumb)) < 0)
		fy_warn("%s: %s; VDDK gets no thumbprint", x->transport,
			fy_err_msg());
	vo.vm_moref = vm->value;
	vo.file = file;
	vo.thumbprint = thumb[0] ? thumb : NULL;
	vo.transports = x->transport;
	vo.nbd = &no;
	rc = fy_nbd_vddk_open_writer(&vo, &w);
	if (rc < 0)
		return fy_err_wrap(rc, "%s", x->transport);
	if (fy_nbd_writer_size(w) != capacity) {
		rc = fy_err_set(-EINVAL, "%s: %s holds %" PRIu64 " bytes over "
				"VDDK, not the %" PRIu64 " expected",
				x->transport, file, fy_nbd_writer_size(w),
				capacity);
	} else {
		sink.opaque = w;
		rc = fy_client_restore_sink(conn, x->sp->backup_id, pos, &sink,
					    capacity, hooks, written, zeros);
	}
	if (rc < 0) {
		char msg[FY_ERR_MAX];

		snprintf(msg, sizeof(msg), "%s", fy_err_msg());
		fy_nbd_writer_close(w);
		return fy_err_set(rc, "%s", msg);
	}
	rc = fy_nbd_writer_close(w);
	return rc < 0 ? fy_err_wrap(rc, "%s", x->transport) : 0;
}

/* The first mode of the list that can write here: hotadd when this
 * machine is a proxy VM of the vCenter (*h is then its handle), https
 * always, nbdssl/nbd when VDDK's path can run (*vddk). Each mode passed
 * over says why. */
static int pick_transport(const char *list, struct fy_vs_client *vc,
			  const struct fy_config *cfg, struct fy_hotadd **h,
			  bool *vddk, char *out, size_t outlen,
			  bool *https_next)
{
	char buf[256], *save = NULL, *t;
	char why[1024] = "", reason[FY_ERR_MAX];

	*h = NULL;
	*vddk = false;
	if (snprintf(buf, sizeof(buf), "%s", list) >= (int)sizeof(buf) ||
	    !buf[0])
		return fy_err_set(-EINVAL, "--transport: a list such as "
				  "\"https\" or \"hotadd:https\"");
	for (t = strtok_r(buf, ":", &save); t; t = strtok_r(NULL, ":", &save)) {
		size_t n = strlen(why);

		if (!strcmp(t, "https")) {
			snprintf(out, outlen, "%s", t);
			return 0;
		}
		if (!strcmp(t, "hotadd")) {
			if (fy_hotadd_open(vc, cfg, h) == 0) {
				/* A disk hotadd cannot attach (the proxy's host
				 * does not see its datastore...) may still go
				 * over https when the list names it next. */
				*https_next = strstr(save ? save : "", "https") !=
					      NULL;
				snprintf(out, outlen, "%s", t);
				return 0;
			}
			*h = NULL;
			fy_warn("restore-vm: hotadd cannot write here: %s; trying "
				"the next mode", fy_err_msg());
			snprintf(why + n, sizeof(why) - n, "%shotadd (%s)",
				 n ? ", " : "", fy_err_msg());
			continue;
		}
		if (strcmp(t, "nbdssl") && strcmp(t, "nbd"))
			return fy_err_set(-EINVAL, "--transport: unknown mode "
					  "\"%s\" (hotadd, https, nbdssl, nbd)",
					  t);
		if (fy_vddk_ready(cfg, reason, sizeof(reason))) {
			*vddk = true;
			snprintf(out, outlen, "%s", t);
			return 0;
		}
		fy_warn("restore-vm: %s cannot write here: %s; trying the next "
			"mode", t, reason);
		snprintf(why + n, sizeof(why) - n, "%s%s (%s)", n ? ", " : "",
			 t, reason);
	}
	return fy_err_set(-ENOTSUP, "no mode of the list can write the disks "
			  "here: %s", why);
}

/* ---- the job ------------------------------------------------------------- */

static void disk_progress(void *opaque, uint64_t data, uint64_t zeros,
			  uint64_t skipped, uint64_t size, bool done)
{
	struct rv *x = opaque;
	struct fy_job_disk_result *d = &x->res->disks[x->res->n - 1];

	d->st.size = size;
	d->st.bytes_read = data;
	d->st.bytes_zero = zeros;
	d->st.bytes_sent = data + zeros;
	d->st.bytes_unchanged = skipped;
	d->st.restore = true;
	d->st.seconds = fy_now() - x->disk_t0;
	if (x->ev && x->ev->progress)
		x->ev->progress(x->ev->opaque, x->disk, x->n_disks, &d->st,
				done);
}

static int write_disks(struct rv *x, struct fy_vs_client *vc,
		       struct fy_conn *conn, const struct fy_vmconfig *c,
		       const struct rv_build *b, const struct fy_vs_vm *vm,
		       const struct fy_vs_placement *pl,
		       const struct find_backup *fb)
{
	struct fy_job_result *res = x->res;
	const struct fy_restore_hooks hooks = {
		.cancel = x->cancel, .progress = disk_progress, .opaque = x,
	};
	size_t i;
	int rc;

	x->n_disks = 0;
	for (i = 0; i < b->vm.n_disks; i++)
		x->n_disks += b->from[i]->in_backup;
	x->disk = 0;
	for (i = 0; i < b->vm.n_disks; i++) {
		const struct fy_vmconfig_disk *d = b->from[i];
		const struct fy_vs_disk *nd = new_disk(vm, c, d);
		struct fy_job_disk_result *rd;
		struct fy_vs_ds_put *put = NULL;
		uint64_t written = 0, zeros = 0;
		char detail[FY_JOB_TEXT_MAX + 64];
		int fd = -1;

		if (res->n == FY_JOB_DISKS_MAX)
			return fy_err_set(-E2BIG, "a restore reports at most %d "
					  "disks", FY_JOB_DISKS_MAX);
		if (!nd)
			return fy_err_set(-EIO, "the new VM has no disk on the "
					  "recorded controller's bus at unit "
					  "%u", d->unit);
		rd = &res->disks[res->n++];
		snprintf(rd->file, sizeof(rd->file), "%s", nd->file_name);
		rd->st.size = nd->capacity;
		rd->skipped = !d->in_backup;
		rd->index = d->backup_disk;
		if (!d->in_backup) {
			fy_info("restore-vm: %s left empty: the backup did not "
				"hold it (independent or excluded)", rd->file);
			continue;
		}
		if (cancelled(x))
			return fy_err_set(-ECANCELED, "cancelled");
		if (d->backup_disk >= fb->n_disks ||
		    fb->disks[d->backup_disk].size != nd->capacity)
			return fy_err_set(-EINVAL, "backup disk %u is %" PRIu64
					  " bytes, the new disk %s %" PRIu64,
					  d->backup_disk,
					  d->backup_disk < fb->n_disks
						  ? fb->disks[d->backup_disk].size
						  : 0,
					  rd->file, nd->capacity);
		snprintf(rd->transport, sizeof(rd->transport), "%s",
			 x->transport);
		snprintf(detail, sizeof(detail), "backup disk %u to %s over %s",
			 d->backup_disk, rd->file, rd->transport);
		phase(x, "write", detail);
		x->disk_t0 = fy_now();
		if (x->vddk) {
			rc = write_vddk(x, vc, conn, &vm->moref, nd->file_name,
					nd->capacity, d->backup_disk, true,
					&hooks, &written, &zeros);
			if (rc < 0)
				return rc;
			x->disk++;
			continue;
		}
		if (x->h) {
			struct fy_hotadd_rw *rw = NULL;
			const char *node;

			rc = fy_hotadd_attach_rw(x->h, nd->file_name,
						 nd->capacity, &rw, &node);
			if (rc < 0 && x->https_next) {
				note(res, "%s went over https: hotadd could not "
				     "attach it (%s)", rd->file, fy_err_msg());
				snprintf(rd->transport, sizeof(rd->transport),
					 "https");
				goto https;
			}
			if (rc < 0)
				return rc;
			rc = fy_client_restore_device(conn, x->sp->backup_id,
						      d->backup_disk, node,
						      nd->capacity, true,
						      &hooks, &written,
						      &zeros);
			if (fy_hotadd_detach_rw(rw) < 0) {
				/* Still on the proxy: the VM must not be
				 * destroyed under it (the journal has both). */
				x->attached_left = true;
				if (rc == 0)
					rc = -EIO; /* detach said why */
			}
			if (rc < 0)
				return rc;
			x->disk++;
			continue;
		}
https:
		rc = fy_vs_datastore_put_open(vc, pl->datacenter_path,
					      nd->file_name, nd->capacity, &fd,
					      &put);
		if (rc < 0)
			return rc;
		rc = fy_client_restore_fd(conn, x->sp->backup_id,
					  d->backup_disk, fd, nd->capacity,
					  &hooks, &written, &zeros);
		if (rc < 0) {
			char msg[FY_ERR_MAX];
			int prc;

			/* The upload's own failure, when it came first, is
			 * the cause (the restore then saw a broken pipe). */
			snprintf(msg, sizeof(msg), "%s", fy_err_msg());
			prc = fy_vs_datastore_put_finish(put, false);
			if (prc < 0 && prc != -ECANCELED)
				return prc;
			return fy_err_set(rc, "%s", msg);
		}
		rc = fy_vs_datastore_put_finish(put, true);
		if (rc < 0)
			return rc;
		x->disk++;
	}
	return 0;
}

/* Where the disks go when --datastore is not given: where the backed-up
 * VM's files are, if it still exists. */
static int default_datastore(struct fy_vs_client *vc, const char *source,
			     char *out, size_t outlen)
{
	struct fy_vs_moref m;
	struct fy_vs_vm *vm = NULL;
	const char *end;
	int rc;

	rc = fy_vs_find_vm(vc, FY_VS_BY_NAME, source, &m);
	if (rc == 0)
		rc = fy_vs_vm_get(vc, &m, &vm);
	if (rc < 0)
		return fy_err_set(-EINVAL, "--datastore is needed: the backed-up "
				  "VM %s is not there to take its datastore "
				  "from", source);
	end = vm->vmx_path[0] == '[' ? strchr(vm->vmx_path, ']') : NULL;
	if (!end) {
		fy_vs_vm_free(vm);
		return fy_err_set(-EINVAL, "--datastore is needed");
	}
	snprintf(out, outlen, "%.*s", (int)(end - vm->vmx_path - 1),
		 vm->vmx_path + 1);
	fy_vs_vm_free(vm);
	return 0;
}

int fy_restore_vm_check(const struct fy_restore_vm_spec *sp)
{
	unsigned i;

	if (!sp->backup_id || !sp->backup_id[0])
		return fy_err_set(-EINVAL, "restore-vm: no backup given");
	if (sp->into) {
		if (sp->name || sp->datastore || sp->host || sp->pool ||
		    sp->folder || sp->n_networks || sp->provisioning ||
		    sp->keep_mac)
			return fy_err_set(-EINVAL, "restore-vm --into VM writes "
					  "an existing VM's disks: --name, "
					  "--datastore, --host, --resource-pool, "
					  "--folder, --network, "
					  "--disk-provisioning and --keep-mac "
					  "are for a new VM");
		if (!sp->into[0])
			return fy_err_set(-EINVAL, "restore-vm: --into names "
					  "the VM to write");
		if (sp->n_disks > FY_JOB_DISKS_MAX)
			return fy_err_set(-EINVAL, "restore-vm: at most %d "
					  "--disk", FY_JOB_DISKS_MAX);
		for (i = 0; i < sp->n_disks; i++) {
			unsigned k;

			for (k = 0; k < i; k++)
				if (sp->disks[k] == sp->disks[i])
					return fy_err_set(-EINVAL, "restore-vm: "
							  "--disk %u given "
							  "twice", sp->disks[i]);
		}
	} else if (sp->n_disks) {
		return fy_err_set(-EINVAL, "restore-vm: --disk goes with --into "
				  "(a new VM gets every disk of the backup)");
	} else if (!sp->name || !sp->name[0] ||
		   strlen(sp->name) >= FY_VMCONFIG_NAME_MAX - 1 ||
		   !fy_vmconfig_text_ok(sp->name)) {
		return fy_err_set(-EINVAL, "restore-vm: --name: the new VM's "
				  "name, 1 to %d bytes of UTF-8 without control "
				  "characters (or --into an existing VM)",
				  FY_VMCONFIG_NAME_MAX - 2);
	}
	if (sp->host && sp->pool)
		return fy_err_set(-EINVAL, "restore-vm: --host or "
				  "--resource-pool, not both");
	if (sp->provisioning && strcmp(sp->provisioning, "thin") &&
	    strcmp(sp->provisioning, "thick") && strcmp(sp->provisioning, "same"))
		return fy_err_set(-EINVAL, "restore-vm: --disk-provisioning "
				  "thin, thick or same");
	if (sp->n_networks > FY_RESTORE_NETWORKS_MAX)
		return fy_err_set(-EINVAL, "restore-vm: at most %d --network",
				  FY_RESTORE_NETWORKS_MAX);
	for (i = 0; i < sp->n_networks; i++)
		if (!strchr(sp->networks[i], '=') || sp->networks[i][0] == '=')
			return fy_err_set(-EINVAL, "restore-vm: --network "
					  "OLD=NEW, not \"%s\"",
					  sp->networks[i]);
	if (sp->transports) {
		/* Only the form: which modes can write is the run's to say. */
		char buf[256], *save = NULL, *t;

		if (snprintf(buf, sizeof(buf), "%s", sp->transports) >=
			    (int)sizeof(buf) || !buf[0])
			return fy_err_set(-EINVAL, "--transport: a list such as "
					  "\"https\" or \"hotadd:https\"");
		for (t = strtok_r(buf, ":", &save); t;
		     t = strtok_r(NULL, ":", &save))
			if (strcmp(t, "https") && strcmp(t, "hotadd") &&
			    strcmp(t, "nbdssl") && strcmp(t, "nbd"))
				return fy_err_set(-EINVAL, "--transport: unknown "
						  "mode \"%s\" (hotadd, https, "
						  "nbdssl, nbd)", t);
	}
	return 0;
}

static int run(struct rv *x, const struct fy_config *cfg)
{
	const struct fy_restore_vm_spec *sp = x->sp;
	struct fy_job_result *res = x->res;
	struct find_backup *fbp = calloc(1, sizeof(*fbp));
	struct fy_settings s;
	struct fy_conn *conn = NULL;
	struct fy_vs_client *vc = NULL;
	struct fy_vs_placement pl;
	struct fy_vs_moref vmref = { 0 }, exist;
	struct fy_vs_vm *vm = NULL;
	struct rv_build *b = calloc(1, sizeof(*b));
	struct fy_journal_file *jf = NULL;
	struct fy_journal_entry je = { .kind = FY_JOURNAL_RESTORE,
				       .device_key = -1 };
	int rc;

	if (!b || !fbp) {
		free(b);
		free(fbp);
		return fy_err_set(-ENOMEM, "out of memory");
	}
	phase(x, "connect", sp->backup_id);
	if ((rc = fy_restore_vm_check(sp)) < 0)
		goto out;
	if ((rc = fy_settings_load(cfg, &s)) < 0 ||
	    (rc = fy_repo_connect(&s, "ferry-agent " FERRY_VERSION, &conn,
				  NULL, 0)) < 0)
		goto out;
	if ((rc = load_backup(conn, sp->backup_id, true, fbp)) < 0)
		goto out;
	if ((rc = check_networks(sp, fbp->record)) < 0)
		goto out;
	snprintf(res->source, sizeof(res->source), "%s", fbp->source);
	if ((rc = fy_vs_client_open(cfg, &vc)) < 0)
		goto out;
	if ((rc = pick_transport(sp->transports ? sp->transports
						: RV_DEFAULT_TRANSPORTS,
				 vc, cfg, &x->h, &x->vddk, x->transport,
				 sizeof(x->transport), &x->https_next)) < 0)
		goto out;
	rc = fy_vs_find_vm(vc, FY_VS_BY_NAME, sp->name, &exist);
	if (rc == 0 || rc == -EEXIST) {
		rc = fy_err_set(-EEXIST, "a VM named %s exists: restore-vm "
				"never overwrites a VM; choose another --name",
				sp->name);
		goto out;
	}
	if (rc != -ENOENT)
		goto out;
	if (sp->datastore)
		snprintf(res->datastore, sizeof(res->datastore), "%s",
			 sp->datastore);
	else if ((rc = default_datastore(vc, fbp->source, res->datastore,
					 sizeof(res->datastore))) < 0)
		goto out;
	rc = fy_vs_placement_resolve(vc, sp->host, sp->pool, sp->folder,
				     res->datastore, &pl);
	if (rc < 0)
		goto out;
	snprintf(res->host, sizeof(res->host), "%s", pl.host_name);
	if ((rc = build_vm(fbp->record, sp, b, res)) < 0)
		goto out;
	/* The same journal as backups: a VM created and not finished is
	 * the self-cleanup's to destroy if this process dies. */
	if ((rc = fy_hotadd_journal_open(cfg, &jf)) < 0)
		goto out;
	if (cancelled(x)) {
		rc = fy_err_set(-ECANCELED, "cancelled before the VM was "
				"created");
		goto out;
	}
	phase(x, "create", sp->name);
	if ((rc = fy_vs_vm_create(vc, &b->vm, &pl, &vmref)) < 0) {
		/* The task may have created the VM before its wait failed
		 * (a timeout, a lost connection): the name was free before,
		 * so a VM of that name now is this one, to be undone. */
		char msg[FY_ERR_MAX];

		snprintf(msg, sizeof(msg), "%s", fy_err_msg());
		if (fy_vs_find_vm(vc, FY_VS_BY_NAME, sp->name, &vmref) < 0) {
			fy_err_set(rc, "%s", msg);
			goto out;
		}
		fy_err_set(rc, "%s", msg);
	}
	snprintf(res->vm_moref, sizeof(res->vm_moref), "%s", vmref.value);
	je.pid = (int32_t)getpid();
	snprintf(je.vm, sizeof(je.vm), "%s", vmref.value);
	snprintf(je.file, sizeof(je.file), "%s", sp->name);
	if (rc == 0)
		rc = fy_journal_add(jf, &je);
	if (rc == 0)
		rc = fy_vs_vm_get(vc, &vmref, &vm);
	if (rc == 0)
		rc = write_disks(x, vc, conn, fbp->record, b, vm, &pl, fbp);
	if (rc < 0) {
		/* Never leave a half-restored VM behind as if it were one. */
		char msg[FY_ERR_MAX];
		int drc;

		snprintf(msg, sizeof(msg), "%s", fy_err_msg());
		if (x->attached_left) {
			rc = fy_err_set(rc, "%s; a disk of the half-restored VM "
					"%s (%s) is still attached to this proxy: "
					"the next self-cleanup detaches it and "
					"destroys the VM", msg, sp->name,
					vmref.value);
			goto out;
		}
		phase(x, "cleanup", sp->name);
		drc = fy_vs_vm_destroy(vc, &vmref);
		if (drc < 0) {
			rc = fy_err_set(rc, "%s; the half-restored VM %s (%s) "
					"could not be destroyed (%s): %s", msg,
					sp->name, vmref.value, fy_err_msg(),
					je.id ? "the next self-cleanup tries "
						"again, or delete it by hand"
					      : "delete it by hand");
		} else {
			rc = fy_err_set(rc, "%s; the half-restored VM %s was "
					"destroyed", msg, sp->name);
			if (je.id)
				fy_journal_remove(jf, je.id);
		}
		goto out;
	}
	/* Every disk is written: the VM is whole, no longer the
	 * self-cleanup's. A cancel from now on has nothing to undo. */
	if (fy_journal_remove(jf, je.id) < 0)
		fy_warn("restore-vm: %s", fy_err_msg());
	if (sp->power_on) {
		phase(x, "power-on", sp->name);
		rc = fy_vs_vm_power_on(vc, &vmref);
		res->powered_on = rc == 0;
		if (rc < 0)
			rc = fy_err_set(rc, "VM %s is restored and kept, but "
					"powering it on failed: %s", sp->name,
					fy_err_msg());
	}
out:
	fy_journal_close(jf);
	fy_hotadd_free(x->h);
	x->h = NULL;
	fy_vs_vm_free(vm);
	if (vc) {
		fy_vs_client_logout(vc);
		fy_vs_client_free(vc);
	}
	if (conn)
		fy_conn_close(conn);
	fy_vmconfig_free(fbp->record);
	free(fbp);
	free(b);
	return rc;
}

/* ---- into an existing VM: the rollback ----------------------------------- */

static bool in_areas(void *opaque, uint64_t off, uint64_t len)
{
	const struct fy_vs_areas *a = opaque;
	size_t lo = 0, hi = a->n;

	/* The first area that ends after off. */
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (a->areas[mid].start + a->areas[mid].length <= off)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < a->n && a->areas[lo].start < off + len;
}

struct into_progress {
	struct rv *x;
	const struct fy_vs_areas *areas;
};

static void into_progress_cb(void *opaque, uint64_t data, uint64_t zeros,
			     uint64_t skipped, uint64_t size, bool done)
{
	struct into_progress *p = opaque;

	disk_progress(p->x, data, zeros, skipped, size, done);
}

static bool into_want(void *opaque, uint64_t off, uint64_t len)
{
	struct into_progress *p = opaque;

	return !p->areas || in_areas((void *)p->areas, off, len);
}

/* The VM's disk that backup disk bd goes into: the one it was read from
 * (its UUID; *same), else the one at the index it had in its VM (another
 * VM, or a disk replaced since: written whole). */
static const struct fy_vs_disk *target_disk(const struct fy_vs_vm *vm,
					    const struct backup_disk *bd,
					    bool *same)
{
	size_t i;

	*same = false;
	for (i = 0; bd->disk_id[0] && i < vm->devices.n_disks; i++)
		if (!strcasecmp(vm->devices.disks[i].uuid, bd->disk_id)) {
			*same = true;
			return &vm->devices.disks[i];
		}
	if (bd->index >= vm->devices.n_disks)
		return NULL;
	return &vm->devices.disks[bd->index];
}

/* One disk of a rollback, decided before anything is written. */
struct into_plan {
	unsigned pos;                  /* the backup's disk */
	const struct fy_vs_disk *d;    /* the VM's disk it goes into */
	struct fy_vs_areas *areas;     /* only these (CBT), or NULL: all */
	char why_full[FY_JOB_TEXT_MAX];
};

/* Finds every target disk and asks CBT what changed, touching nothing:
 * a disk that cannot be written fails the rollback before any is. */
static int plan_into(struct rv *x, struct fy_vs_client *vc,
		     const struct fy_vs_vm *vm, const struct find_backup *fb,
		     struct into_plan *plan, unsigned n)
{
	unsigned i, k;

	for (i = 0; i < n; i++) {
		struct into_plan *p = &plan[i];
		const struct backup_disk *bd = &fb->disks[p->pos];
		bool same;

		p->d = target_disk(vm, bd, &same);
		if (!p->d)
			return fy_err_set(-ENOENT, "VM %s has neither disk %s "
					  "nor a disk %u (backup disk %u, %s): "
					  "nothing to restore it into",
					  vm->name, bd->disk_id, bd->index,
					  p->pos, bd->label);
		for (k = 0; k < i; k++)
			if (plan[k].d == p->d)
				return fy_err_set(-EINVAL, "backup disks %u and "
						  "%u would both go into %s",
						  plan[k].pos, p->pos,
						  p->d->file_name);
		if (p->d->capacity != bd->size)
			return fy_err_set(-EINVAL, "backup disk %u is %" PRIu64
					  " bytes, the VM's disk %s %" PRIu64,
					  p->pos, bd->size, p->d->file_name,
					  p->d->capacity);
		if (p->d->independent || p->d->rdm)
			return fy_err_set(-ENOTSUP, "the VM's disk %s is %s: "
					  "not restored into", p->d->file_name,
					  p->d->rdm ? "a raw device mapping"
						    : "independent");
		/* Only what changed since the backup, when CBT can say. */
		if (!x->h && !x->vddk)
			snprintf(p->why_full, sizeof(p->why_full), "https "
				 "writes whole disks");
		else if (!same)
			snprintf(p->why_full, sizeof(p->why_full), "the disk "
				 "is not the one backed up (another disk UUID)");
		else if (!vm->cbt_enabled)
			snprintf(p->why_full, sizeof(p->why_full), "changed "
				 "block tracking is off on %s", vm->name);
		else if (!bd->change_id[0])
			snprintf(p->why_full, sizeof(p->why_full), "the backup "
				 "recorded no change ID for this disk");
		else if (fy_vs_changed_areas_get(vc, &vm->moref, NULL,
						 p->d->key, p->d->capacity,
						 bd->change_id, &p->areas) < 0)
			snprintf(p->why_full, sizeof(p->why_full), "CBT cannot "
				 "say what changed since the backup: %s",
				 fy_err_msg());
	}
	return 0;
}

static int write_into(struct rv *x, struct fy_vs_client *vc,
		      struct fy_conn *conn, const struct fy_vs_moref *vmref,
		      const struct into_plan *p)
{
	struct fy_job_result *res = x->res;
	struct fy_job_disk_result *rd = &res->disks[res->n];
	const struct fy_vs_disk *d = p->d;
	unsigned pos = p->pos;
	struct into_progress ip = { .x = x, .areas = p->areas };
	const struct fy_restore_hooks hooks = {
		.cancel = x->cancel, .progress = into_progress_cb,
		.want = into_want, .opaque = &ip,
	};
	char detail[FY_JOB_TEXT_MAX + 64];
	uint64_t written = 0, zeros = 0;
	int rc;

	res->n++;
	snprintf(rd->file, sizeof(rd->file), "%s", d->file_name);
	snprintf(rd->transport, sizeof(rd->transport), "%s", x->transport);
	snprintf(rd->full_reason, sizeof(rd->full_reason), "%s", p->why_full);
	rd->index = pos;
	rd->st.size = d->capacity;
	rd->incremental = p->areas != NULL;
	snprintf(detail, sizeof(detail), "backup disk %u into %s over %s (%s)",
		 pos, rd->file, rd->transport,
		 p->areas ? "only what changed" : "whole disk");
	phase(x, "write", detail);
	fy_info("restore-vm: %s", detail);
	x->disk_t0 = fy_now();
	if (x->vddk) {
		rc = write_vddk(x, vc, conn, vmref, d->file_name, d->capacity,
				pos, false, &hooks, &written, &zeros);
	} else if (x->h) {
		struct fy_hotadd_rw *rw = NULL;
		const char *node;

		rc = fy_hotadd_attach_rw(x->h, d->file_name, d->capacity, &rw,
					 &node);
		if (rc == 0) {
			rc = fy_client_restore_device(conn, x->sp->backup_id, pos,
						      node, d->capacity, false,
						      &hooks, &written, &zeros);
			if (fy_hotadd_detach_rw(rw) < 0 && rc == 0)
				rc = -EIO;
		}
	} else {
		struct fy_vs_ds_put *put = NULL;
		int fd = -1;

		/* The datastore's datacenter, found from the inventory. */
		rc = fy_vs_datastore_put_open(vc, NULL, d->file_name,
					      d->capacity, &fd, &put);
		if (rc == 0) {
			rc = fy_client_restore_fd(conn, x->sp->backup_id, pos,
						  fd, d->capacity, &hooks,
						  &written, &zeros);
			if (rc < 0) {
				char msg[FY_ERR_MAX];
				int prc;

				snprintf(msg, sizeof(msg), "%s", fy_err_msg());
				prc = fy_vs_datastore_put_finish(put, false);
				rc = prc < 0 && prc != -ECANCELED
					     ? prc
					     : fy_err_set(rc, "%s", msg);
			} else {
				rc = fy_vs_datastore_put_finish(put, true);
			}
		}
	}
	return rc;
}

static int run_into(struct rv *x, const struct fy_config *cfg)
{
	const struct fy_restore_vm_spec *sp = x->sp;
	struct fy_job_result *res = x->res;
	struct find_backup *fb = calloc(1, sizeof(*fb));
	struct fy_settings s;
	struct fy_conn *conn = NULL;
	struct fy_vs_client *vc = NULL;
	struct fy_vs_moref ref;
	struct fy_vs_vm *vm = NULL;
	struct into_plan *plan = NULL;
	unsigned i;
	int rc;

	if (!fb)
		return fy_err_set(-ENOMEM, "out of memory");
	res->into = true;
	phase(x, "connect", sp->backup_id);
	if ((rc = fy_restore_vm_check(sp)) < 0)
		goto out;
	if ((rc = fy_settings_load(cfg, &s)) < 0 ||
	    (rc = fy_repo_connect(&s, "ferry-agent " FERRY_VERSION, &conn,
				  NULL, 0)) < 0)
		goto out;
	if ((rc = load_backup(conn, sp->backup_id, false, fb)) < 0)
		goto out;
	snprintf(res->source, sizeof(res->source), "%s", fb->source);
	for (i = 0; i < sp->n_disks; i++)
		if (sp->disks[i] >= fb->n_disks) {
			rc = fy_err_set(-EINVAL, "backup %s has %zu disks: no "
					"--disk %u", sp->backup_id, fb->n_disks,
					sp->disks[i]);
			goto out;
		}
	if ((rc = fy_vs_client_open(cfg, &vc)) < 0)
		goto out;
	if ((rc = fy_vs_find_vm_spec(vc, sp->into, &ref)) < 0 ||
	    (rc = fy_vs_vm_get(vc, &ref, &vm)) < 0)
		goto out;
	snprintf(res->vm_name, sizeof(res->vm_name), "%s", vm->name);
	snprintf(res->vm_moref, sizeof(res->vm_moref), "%s", vm->moref.value);
	snprintf(res->host, sizeof(res->host), "%s", vm->host_name);
	if (strcmp(vm->power_state, "poweredOff")) {
		rc = fy_err_set(-EBUSY, "VM %s is %s: restore-vm --into writes "
				"only a powered-off VM's disks; power it off "
				"first", vm->name, vm->power_state);
		goto out;
	}
	if (vm->n_snapshots) {
		rc = fy_err_set(-EBUSY, "VM %s has %zu snapshot(s): restore-vm "
				"--into writes a VM without snapshots (delete "
				"or revert them first)", vm->name,
				vm->n_snapshots);
		goto out;
	}
	if (vm->is_template) {
		rc = fy_err_set(-EINVAL, "%s is a template", vm->name);
		goto out;
	}
	if ((rc = pick_transport(sp->transports ? sp->transports
						: RV_DEFAULT_TRANSPORTS,
				 vc, cfg, &x->h, &x->vddk, x->transport,
				 sizeof(x->transport), &x->https_next)) < 0)
		goto out;
	x->n_disks = sp->n_disks ? sp->n_disks : (unsigned)fb->n_disks;
	if (x->n_disks > FY_JOB_DISKS_MAX) {
		rc = fy_err_set(-E2BIG, "a restore writes at most %d disks",
				FY_JOB_DISKS_MAX);
		goto out;
	}
	plan = calloc(x->n_disks ? x->n_disks : 1, sizeof(*plan));
	if (!plan) {
		rc = fy_err_set(-ENOMEM, "out of memory");
		goto out;
	}
	for (i = 0; i < x->n_disks; i++)
		plan[i].pos = sp->n_disks ? sp->disks[i] : i;
	if ((rc = plan_into(x, vc, vm, fb, plan, x->n_disks)) < 0)
		goto out;
	/* Writes through the proxy are not the VM's own: its change IDs
	 * would no longer describe its disks. CBT goes off before the first
	 * write (a crash then leaves it off: the next backup reads in full)
	 * and on again at the end, with new change IDs. */
	if (vm->cbt_enabled && (rc = fy_vs_cbt_set(vc, &vm->moref, false)) < 0) {
		rc = fy_err_wrap(rc, "turning changed block tracking off on %s "
				 "before writing its disks", vm->name);
		goto out;
	}
	for (x->disk = 0; x->disk < x->n_disks && rc == 0; x->disk++) {
		if (cancelled(x)) {
			rc = fy_err_set(-ECANCELED, "cancelled");
			break;
		}
		rc = write_into(x, vc, conn, &vm->moref, &plan[x->disk]);
	}
	if (vm->cbt_enabled) {
		char msg[FY_ERR_MAX];

		snprintf(msg, sizeof(msg), "%s", rc < 0 ? fy_err_msg() : "");
		if (fy_vs_cbt_set(vc, &vm->moref, true) < 0)
			note(res, "changed block tracking is off on %s and "
			     "could not be turned on again (%s): turn it on "
			     "before its next backup", vm->name, fy_err_msg());
		else
			note(res, "changed block tracking was reset: the next "
			     "backup of %s reads its disks in full", vm->name);
		if (rc < 0)
			fy_err_set(rc, "%s", msg);
	}
	if (rc == 0 && sp->power_on && !cancelled(x)) {
		phase(x, "power-on", vm->name);
		rc = fy_vs_vm_power_on(vc, &vm->moref);
		res->powered_on = rc == 0;
	}
	if (rc < 0 && res->n)
		rc = fy_err_set(rc, "%s; the disks of VM %s are partly "
				"written: restore again before using it",
				fy_err_msg(), vm->name);
out:
	fy_vs_vm_free(vm);
	fy_hotadd_free(x->h);
	x->h = NULL;
	if (vc) {
		fy_vs_client_logout(vc);
		fy_vs_client_free(vc);
	}
	if (conn)
		fy_conn_close(conn);
	for (i = 0; plan && i < x->n_disks; i++)
		fy_vs_areas_free(plan[i].areas);
	free(plan);
	fy_vmconfig_free(fb->record);
	free(fb);
	return rc;
}

int fy_restore_vm_run(const struct fy_config *cfg,
		      const struct fy_restore_vm_spec *spec,
		      atomic_bool *cancel, const struct fy_job_events *ev,
		      struct fy_job_result *res)
{
	struct rv x = { .sp = spec, .cancel = cancel, .ev = ev, .res = res,
			 .cfg = cfg };
	double t0 = fy_now();
	int rc;

	memset(res, 0, sizeof(*res));
	snprintf(res->kind, sizeof(res->kind), "%s", FY_JOB_KIND_RESTORE_VM);
	snprintf(res->backup_id, sizeof(res->backup_id), "%s",
		 spec->backup_id ? spec->backup_id : "");
	snprintf(res->vm_name, sizeof(res->vm_name), "%s",
		 spec->name ? spec->name : spec->into ? spec->into : "");
	rc = spec->into ? run_into(&x, cfg) : run(&x, cfg);
	res->seconds = fy_now() - t0;
	res->rc = rc < 0 ? rc : 0;
	if (rc < 0) {
		res->cancelled = rc == -ECANCELED;
		snprintf(res->error, sizeof(res->error), "%s", fy_err_msg());
	}
	phase(&x, "done", rc < 0 ? res->error : "");
	return rc;
}

/* ---- output -------------------------------------------------------------- */

void fy_restore_vm_result_text(FILE *f, const struct fy_job_result *r)
{
	unsigned i;

	if (r->into)
		fprintf(f, "restored backup %s (VM %s) into VM %s (%s), %.1f s%s\n",
			r->backup_id, r->source, r->vm_name, r->vm_moref,
			r->seconds, r->powered_on ? ", powered on" : "");
	else
		fprintf(f, "restored backup %s (VM %s) as VM %s (%s) on "
			"datastore %s%s%s, %.1f s%s\n", r->backup_id, r->source,
			r->vm_name, r->vm_moref, r->datastore,
			r->host[0] ? ", host " : "", r->host, r->seconds,
			r->powered_on ? ", powered on" : "");
	for (i = 0; i < r->n; i++) {
		const struct fy_job_disk_result *d = &r->disks[i];
		char cap[32], w[32];

		fy_format_bytes(d->st.size, cap, sizeof(cap));
		fy_format_bytes(d->st.bytes_read + d->st.bytes_zero, w,
				sizeof(w));
		if (d->skipped)
			fprintf(f, "  %s (%s): empty, not in the backup\n",
				d->file, cap);
		else if (r->into && d->incremental)
			fprintf(f, "  %s (%s): backup disk %u over %s, only "
				"what changed since the backup: %s written\n",
				d->file, cap, d->index, d->transport, w);
		else if (r->into)
			fprintf(f, "  %s (%s): backup disk %u over %s, whole "
				"disk (%s)\n", d->file, cap, d->index,
				d->transport, d->full_reason);
		else
			fprintf(f, "  %s (%s): backup disk %u over %s\n",
				d->file, cap, d->index, d->transport);
	}
	if (r->notes[0])
		fprintf(f, "  note: %s\n", r->notes);
}

/* ---- ferry-agent restore-vm ---------------------------------------------- */

enum {
	RO_CONFIG = 3000, RO_NAME, RO_DATASTORE, RO_HOST, RO_POOL, RO_FOLDER,
	RO_NETWORK, RO_PROVISIONING, RO_KEEP_MAC, RO_POWER_ON, RO_TRANSPORT,
	RO_JSON, RO_QUIET, RO_SET, RO_LOG_LEVEL, RO_INTO, RO_DISK,
};

static void usage(FILE *f)
{
	fprintf(f, "usage: ferry-agent restore-vm --config FILE BACKUP --name "
		"NEW\n"
		"         [--datastore DS] [--host H | --resource-pool PATH] "
		"[--folder PATH]\n"
		"         [--network OLD=NEW ...] [--disk-provisioning "
		"thin|thick|same]\n"
		"         [--keep-mac] [--power-on] [--transport LIST] "
		"[--json] [--quiet]\n"
		"         [--set KEY=VALUE] [--log-level N]\n"
		"       ferry-agent restore-vm --config FILE BACKUP --into VM "
		"[--disk N ...]\n"
		"         [--power-on] [--transport LIST] [--json] [--quiet]\n");
}

static void tty_progress(void *opaque, unsigned disk, unsigned n_disks,
			 const struct fy_disk_stats *st, bool done)
{
	char prefix[32], line[512];

	(void)opaque;
	snprintf(prefix, sizeof(prefix), "disk %u/%u", disk + 1, n_disks);
	fy_progress_format(line, sizeof(line), fy_term_width(), prefix, st,
			   done);
	fprintf(stderr, "\r\033[K%s%s", line, done ? "\n" : "");
	fflush(stderr);
}

int agent_cmd_restore_vm(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, RO_CONFIG },
		{ "name", required_argument, NULL, RO_NAME },
		{ "datastore", required_argument, NULL, RO_DATASTORE },
		{ "host", required_argument, NULL, RO_HOST },
		{ "resource-pool", required_argument, NULL, RO_POOL },
		{ "folder", required_argument, NULL, RO_FOLDER },
		{ "network", required_argument, NULL, RO_NETWORK },
		{ "disk-provisioning", required_argument, NULL, RO_PROVISIONING },
		{ "keep-mac", no_argument, NULL, RO_KEEP_MAC },
		{ "power-on", no_argument, NULL, RO_POWER_ON },
		{ "transport", required_argument, NULL, RO_TRANSPORT },
		{ "json", no_argument, NULL, RO_JSON },
		{ "quiet", no_argument, NULL, RO_QUIET },
		{ "set", required_argument, NULL, RO_SET },
		{ "log-level", required_argument, NULL, RO_LOG_LEVEL },
		{ "into", required_argument, NULL, RO_INTO },
		{ "disk", required_argument, NULL, RO_DISK },
		{ NULL, 0, NULL, 0 },
	};
	struct fy_restore_vm_spec sp = { 0 };
	struct fy_job_result *res = calloc(1, sizeof(*res));
	struct fy_config *cfg = fy_config_new();
	struct fy_job_events ev = { 0 };
	const char *config = NULL, *sets[64];
	unsigned n_sets = 0, i;
	bool json = false, quiet = false;
	int c, rc = 0, level = -1;

	if (!res || !cfg) {
		fprintf(stderr, "ferry-agent: out of memory\n");
		rc = -ENOMEM;
		goto out;
	}
	optind = 1;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case RO_CONFIG: config = optarg; break;
		case RO_NAME: sp.name = optarg; break;
		case RO_DATASTORE: sp.datastore = optarg; break;
		case RO_HOST: sp.host = optarg; break;
		case RO_POOL: sp.pool = optarg; break;
		case RO_FOLDER: sp.folder = optarg; break;
		case RO_PROVISIONING: sp.provisioning = optarg; break;
		case RO_KEEP_MAC: sp.keep_mac = true; break;
		case RO_POWER_ON: sp.power_on = true; break;
		case RO_TRANSPORT: sp.transports = optarg; break;
		case RO_INTO: sp.into = optarg; break;
		case RO_DISK: {
			char *end;
			long v = strtol(optarg, &end, 10);

			if (*end || !*optarg || v < 0 || v >= 4096 ||
			    sp.n_disks == FY_JOB_DISKS_MAX)
				goto bad;
			sp.disks[sp.n_disks++] = (unsigned)v;
			break;
		}
		case RO_JSON: json = true; break;
		case RO_QUIET: quiet = true; break;
		case RO_LOG_LEVEL:
			if (fy_cli_log_level(optarg, &level) < 0)
				goto bad;
			break;
		case RO_NETWORK:
			if (sp.n_networks == FY_RESTORE_NETWORKS_MAX) {
				fy_err_set(-EINVAL, "at most %d --network",
					   FY_RESTORE_NETWORKS_MAX);
				goto bad;
			}
			sp.networks[sp.n_networks++] = optarg;
			break;
		case RO_SET:
			if (n_sets == 63)
				goto bad;
			sets[n_sets++] = optarg;
			break;
		default:
			goto bad;
		}
	}
	if (optind + 1 != argc || !config)
		goto bad;
	sp.backup_id = argv[optind];
	if (fy_restore_vm_check(&sp) < 0) {
		fprintf(stderr, "ferry-agent: %s\n", fy_err_msg());
		goto bad;
	}
	if (!quiet && !json && isatty(STDERR_FILENO))
		ev.progress = tty_progress;
	if ((rc = fy_config_load(cfg, config)) < 0)
		goto fail;
	for (i = 0; i < n_sets; i++)
		if ((rc = fy_config_set_pair(cfg, sets[i])) < 0)
			goto fail;
	if ((rc = fy_agent_setup_logging(cfg, level)) < 0)
		goto fail;
	/* A crashed run's leftovers first, as backup --vm does. */
	{
		struct fy_hotadd_cleanup_report *rep = calloc(1, sizeof(*rep));

		if (rep && fy_job_cleanup(cfg, false, rep) < 0)
			fy_info("self-cleanup skipped: %s", fy_err_msg());
		else if (rep && (rep->cleaned || rep->remaining))
			fprintf(stderr, "%scleanup: numCleanedUp=%u "
				"numRemaining=%u\n", rep->log, rep->cleaned,
				rep->remaining);
		free(rep);
	}
	rc = fy_restore_vm_run(cfg, &sp, NULL, &ev, res);
	if (json) {
		fy_job_result_json(stdout, res);
		printf("\n");
	}
	if (rc < 0)
		goto fail;
	if (!json && !quiet)
		fy_restore_vm_result_text(stdout, res);
	goto out;
bad:
	usage(stderr);
	fy_config_free(cfg);
	free(res);
	return 2;
fail:
	fprintf(stderr, "ferry-agent: restore-vm failed: %s\n", fy_err_msg());
out:
	fy_config_free(cfg);
	free(res);
	return rc < 0 ? 1 : 0;
}
