/*
 * Reading the inventory: VMs with their devices and snapshots, hosts,
 * datastores, datacenters, inventory paths; finding a VM by moref, name,
 * path, instance UUID or BIOS UUID.
 *
 * A datastore's list of hosts can be incomplete (the SDK notes say so), so
 * every host's own list of datastores is read too and the two are joined.
 */
#include "vsphere/vs_int.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const char *const vm_paths[] = {
	"name", "parent", "parentVApp", "config.uuid", "config.instanceUuid",
	"config.template", "config.changeTrackingEnabled",
	"config.hardware.device", "config.guestId", "config.files.vmPathName",
	"runtime.host", "runtime.powerState", "runtime.connectionState",
	"runtime.consolidationNeeded", "snapshot", "datastore", NULL,
};
static const char *const entity_paths[] = { "name", "parent", NULL };
static const char *const vapp_paths[] = { "name", "parent", "parentFolder",
					  NULL };
static const char *const vm_name_paths[] = { "name", "parent", "parentVApp",
					     NULL };
static const char *const host_paths[] = {
	"name", "parent", "datastore", "runtime.connectionState",
	"runtime.inMaintenanceMode", NULL,
};
static const char *const ds_paths[] = {
	"name", "parent", "summary", "host", "info", NULL,
};

/* ---- entities: names and parents --------------------------------------- */

struct entity {
	struct fy_vs_moref moref;
	struct fy_vs_moref parent;
	const char *name;
};

struct sweep {
	struct fy_vs_client *c;
	struct vs_arena *arena;
	struct entity *ents;
	size_t n_ents, cap_ents;
	struct fy_vs_inventory *inv;  /* NULL: names and parents only */
	size_t cap_vms, cap_hosts, cap_ds, cap_dc;
	bool sorted;
};

static int grow(void **arr, size_t *cap, size_t n, size_t size)
{
	void *p;
	size_t cap2;

	if (n < *cap)
		return 0;
	cap2 = *cap ? *cap * 2 : 64;
	if (cap2 > SIZE_MAX / size)
		return fy_err_set(-ENOMEM, "out of memory");
	p = realloc(*arr, cap2 * size);
	if (!p)
		return fy_err_set(-ENOMEM, "out of memory");
	*arr = p;
	*cap = cap2;
	return 0;
}

static int ent_cmp(const void *a, const void *b)
{
	const struct entity *x = a, *y = b;

	return strcmp(x->moref.value, y->moref.value);
}

static const struct entity *ent_find(const struct sweep *s,
				     const struct fy_vs_moref *m)
{
	struct entity key;

	if (!m->value[0])
		return NULL;
	key.moref = *m;
	return bsearch(&key, s->ents, s->n_ents, sizeof(*s->ents), ent_cmp);
}

/* "/DC0/vm/folder/name": the names below the root folder (which a
 * container view of the root folder does not list). The walk is bounded by
 * the number of entities, so a loop cannot hang it. */
static char *ent_path(const struct sweep *s, const struct entity *e,
		      struct vs_arena *a)
{
	const struct entity *chain[256];
	size_t n = 0, len = 0, i;
	char *out, *p;

	while (e && n < sizeof(chain) / sizeof(chain[0]) && n <= s->n_ents &&
	       !vs_moref_eq(&e->moref, &s->c->root_folder)) {
		chain[n++] = e;
		e = ent_find(s, &e->parent);
	}
	for (i = 0; i < n; i++)
		len += 1 + strlen(chain[i]->name);
	out = p = vs_arena_alloc(a, len + 1);
	if (!out)
		return NULL;
	for (i = n; i-- > 0;) {
		*p++ = '/';
		strcpy(p, chain[i]->name);
		p += strlen(chain[i]->name);
	}
	*p = '\0';
	return out;
}

static const struct entity *ent_datacenter(const struct sweep *s,
					   const struct entity *e)
{
	size_t n = 0;

	while (e && n++ <= s->n_ents) {
		if (!strcmp(e->moref.type, "Datacenter"))
			return e;
		e = ent_find(s, &e->parent);
	}
	return NULL;
}

static int add_entity(struct sweep *s, const struct vs_node *o,
		      const struct fy_vs_moref *obj)
{
	const struct vs_node *v;
	struct entity *e;
	int rc;

	rc = grow((void **)&s->ents, &s->cap_ents, s->n_ents, sizeof(*s->ents));
	if (rc < 0)
		return rc;
	e = &s->ents[s->n_ents];
	memset(e, 0, sizeof(*e));
	e->moref = *obj;
	v = vs_prop(o, "name");
	e->name = vs_arena_strdup(s->arena, v ? v->text : obj->value);
	if (!e->name)
		return fy_err_set(-ENOMEM, "out of memory");
	/* A VM in a vApp has parentVApp instead of parent; a vApp names its
	 * folder in parentFolder. */
	if ((v = vs_prop(o, "parent")) || (v = vs_prop(o, "parentVApp")) ||
	    (v = vs_prop(o, "parentFolder")))
		vs_node_moref(v, &e->parent);
	s->n_ents++;
	s->sorted = false;
	return 0;
}

static int add_host(struct sweep *s, const struct vs_node *o,
		    const struct fy_vs_moref *obj)
{
	struct fy_vs_inventory *inv = s->inv;
	const struct vs_node *v, *m;
	struct fy_vs_host *h;
	size_t n = 0;
	int rc;

	rc = grow((void **)&inv->hosts, &s->cap_hosts, inv->n_hosts,
		  sizeof(*inv->hosts));
	if (rc < 0)
		return rc;
	h = &inv->hosts[inv->n_hosts];
	memset(h, 0, sizeof(*h));
	h->moref = *obj;
	v = vs_prop(o, "name");
	h->name = vs_arena_strdup(s->arena, v ? v->text : "");
	v = vs_prop(o, "runtime.connectionState");
	h->connection_state = vs_arena_strdup(s->arena, v ? v->text : "");
	v = vs_prop(o, "runtime.inMaintenanceMode");
	h->maintenance = v && !strcmp(v->text, "true");
	if (!h->name || !h->connection_state)
		return fy_err_set(-ENOMEM, "out of memory");
	v = vs_prop(o, "datastore");
	for (m = vs_first(v); m; m = m->next)
		n++;
	if (n) {
		h->datastores = vs_arena_array(s->arena, n, sizeof(*h->datastores));
		if (!h->datastores)
			return fy_err_set(-ENOMEM, "out of memory");
		for (m = vs_first(v); m; m = m->next)
			if (vs_node_moref(m, &h->datastores[h->n_datastores]) == 0)
				h->n_datastores++;
	}
	inv->n_hosts++;
	return 0;
}

static int add_datastore(struct sweep *s, const struct vs_node *o,
			 const struct fy_vs_moref *obj)
{
	struct fy_vs_inventory *inv = s->inv;
	const struct vs_node *sum, *v, *m;
	struct fy_vs_datastore *d;
	size_t n = 0;
	int64_t x;
	int rc;

	rc = grow((void **)&inv->datastores, &s->cap_ds, inv->n_datastores,
		  sizeof(*inv->datastores));
	if (rc < 0)
		return rc;
	d = &inv->datastores[inv->n_datastores];
	memset(d, 0, sizeof(*d));
	d->moref = *obj;
	sum = vs_prop(o, "summary");
	v = vs_prop(o, "name");
	d->name = vs_arena_strdup(s->arena, v ? v->text
					       : vs_child_text(sum, "name"));
	d->type = vs_arena_strdup(s->arena, vs_child_text(sum, "type"));
	d->url = vs_arena_strdup(s->arena, vs_child_text(sum, "url"));
	if (!d->name || !d->type || !d->url)
		return fy_err_set(-ENOMEM, "out of memory");
	x = vs_child_i64(sum, "capacity", 0);
	d->capacity = x > 0 ? (uint64_t)x : 0;
	x = vs_child_i64(sum, "freeSpace", 0);
	d->free_space = x > 0 ? (uint64_t)x : 0;
	d->accessible = vs_child_bool(sum, "accessible", true);
	/* VmfsDatastoreInfo.vmfs.extent[]: which LUNs a san proxy reads. */
	v = vs_path(vs_prop(o, "info"), "vmfs/extent");
	for (m = v, n = 0; m; m = vs_next_same(m))
		n++;
	if (n > FY_VS_VMFS_MAX_EXTENTS)
		return fy_err_set(-EPROTO, "vsphere: datastore %s lists %zu VMFS "
				  "extents (at most %d)", d->name, n,
				  FY_VS_VMFS_MAX_EXTENTS);
	if (n) {
		d->vmfs_extents = vs_arena_array(s->arena, n,
						 sizeof(*d->vmfs_extents));
		if (!d->vmfs_extents)
			return fy_err_set(-ENOMEM, "out of memory");
		for (m = v; m; m = vs_next_same(m)) {
			struct fy_vs_vmfs_extent *e =
				&d->vmfs_extents[d->n_vmfs_extents++];
			int64_t part = vs_child_i64(m, "partition", 0);
			const char *dn = vs_child_text(m, "diskName");

			e->disk_name = vs_arena_strdup(s->arena, dn ? dn : "");
			if (!e->disk_name)
				return fy_err_set(-ENOMEM, "out of memory");
			e->partition = part > 0 && part < 128 ? (int32_t)part : 0;
		}
		n = 0;
	}
	/* Room for the datastore's own mounts now and the hosts' later. */
	v = vs_prop(o, "host");
	for (m = vs_first(v); m; m = m->next)
		n++;
	d->hosts = malloc((n ? n : 1) * sizeof(*d->hosts));
	if (!d->hosts)
		return fy_err_set(-ENOMEM, "out of memory");
	for (m = vs_first(v); m; m = m->next) {
		const struct vs_node *mi = vs_child(m, "mountInfo");

		/* An unmounted entry is history, not a mount. */
		if (mi && !vs_child_bool(mi, "mounted", true))
			continue;
		if (vs_node_moref(vs_child(m, "key"), &d->hosts[d->n_hosts]) == 0)
			d->n_hosts++;
	}
	inv->n_datastores++;
	return 0;
}

static int add_vm(struct sweep *s, const struct vs_node *o)
{
	struct fy_vs_inventory *inv = s->inv;
	struct fy_vs_vm *vm;
	int rc;

	rc = grow((void **)&inv->vms, &s->cap_vms, inv->n_vms,
		  sizeof(*inv->vms));
	if (rc < 0)
		return rc;
	vm = vs_arena_alloc(s->arena, sizeof(*vm));
	if (!vm)
		return fy_err_set(-ENOMEM, "out of memory");
	rc = vs_parse_vm(o, s->arena, vm);
	if (rc < 0)
		return rc;
	inv->vms[inv->n_vms++] = vm;
	return 0;
}

static int sweep_object(void *opaque, const struct vs_node *o)
{
	struct sweep *s = opaque;
	struct fy_vs_moref obj;
	int rc;

	rc = vs_node_moref(vs_child(o, "obj"), &obj);
	if (rc < 0)
		return rc;
	rc = add_entity(s, o, &obj);
	if (rc < 0 || !s->inv)
		return rc;
	if (!strcmp(obj.type, "HostSystem"))
		return add_host(s, o, &obj);
	if (!strcmp(obj.type, "Datastore"))
		return add_datastore(s, o, &obj);
	if (!strcmp(obj.type, "VirtualMachine"))
		return add_vm(s, o);
	if (!strcmp(obj.type, "Datacenter")) {
		struct fy_vs_inventory *inv = s->inv;

		rc = grow((void **)&inv->datacenters, &s->cap_dc,
			  inv->n_datacenters, sizeof(*inv->datacenters));
		if (rc < 0)
			return rc;
		memset(&inv->datacenters[inv->n_datacenters], 0,
		       sizeof(*inv->datacenters));
		inv->datacenters[inv->n_datacenters++].moref = obj;
	}
	return 0;
}

/* One pass over a container view of the whole inventory. */
static int sweep_run(struct fy_vs_client *c, struct sweep *s, bool with_vms,
		     bool full)
{
	static const char *const all_types[] = {
		"Folder", "Datacenter", "ComputeResource", "HostSystem",
		"Datastore", "VirtualApp", "VirtualMachine", NULL,
	};
	static const char *const name_types[] = {
		"Folder", "Datacenter", "VirtualApp", "VirtualMachine", NULL,
	};
	struct vs_prop_spec specs[8];
	struct fy_vs_moref view;
	char msg[FY_ERR_MAX];
	size_t n = 0;
	int rc;

	specs[n++] = (struct vs_prop_spec){ "Folder", entity_paths };
	specs[n++] = (struct vs_prop_spec){ "Datacenter", entity_paths };
	specs[n++] = (struct vs_prop_spec){ "VirtualApp", vapp_paths };
	if (full) {
		specs[n++] = (struct vs_prop_spec){ "ComputeResource",
						    entity_paths };
		specs[n++] = (struct vs_prop_spec){ "HostSystem", host_paths };
		specs[n++] = (struct vs_prop_spec){ "Datastore", ds_paths };
	}
	if (with_vms)
		specs[n++] = (struct vs_prop_spec){ "VirtualMachine",
						    full ? vm_paths : vm_name_paths };
	rc = vs_view_create(c, full ? all_types : name_types, &view);
	if (rc < 0)
		return rc;
	rc = vs_retrieve(c, &view, true, specs, n, sweep_object, s);
	snprintf(msg, sizeof(msg), "%s", fy_err_msg());
	vs_view_destroy(c, &view);
	if (rc < 0)
		return fy_err_set(rc, "%s", msg);
	qsort(s->ents, s->n_ents, sizeof(*s->ents), ent_cmp);
	s->sorted = true;
	return 0;
}

/* ---- the inventory ----------------------------------------------------- */

struct inv_priv {
	struct vs_arena arena;
};

void fy_vs_inventory_free(struct fy_vs_inventory *inv)
{
	struct inv_priv *p;
	size_t i;

	if (!inv)
		return;
	p = inv->priv_;
	for (i = 0; i < inv->n_datastores; i++)
		free(inv->datastores[i].hosts);
	free(inv->datastores);
	free(inv->hosts);
	free(inv->datacenters);
	free(inv->vms);
	if (p) {
		vs_arena_release(&p->arena);
		free(p);
	}
	free(inv);
}

static bool moref_in(const struct fy_vs_moref *list, size_t n,
		     const struct fy_vs_moref *m)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (vs_moref_eq(&list[i], m))
			return true;
	return false;
}

/* Adds to each datastore the hosts that list it but that it does not. */
static int join_mounts(struct fy_vs_inventory *inv)
{
	size_t i, j;

	for (i = 0; i < inv->n_datastores; i++) {
		struct fy_vs_datastore *d = &inv->datastores[i];
		size_t extra = 0;
		struct fy_vs_moref *p;

		for (j = 0; j < inv->n_hosts; j++)
			if (moref_in(inv->hosts[j].datastores,
				     inv->hosts[j].n_datastores, &d->moref) &&
			    !moref_in(d->hosts, d->n_hosts, &inv->hosts[j].moref))
				extra++;
		if (!extra)
			continue;
		p = realloc(d->hosts, (d->n_hosts + extra) * sizeof(*p));
		if (!p)
			return fy_err_set(-ENOMEM, "out of memory");
		d->hosts = p;
		for (j = 0; j < inv->n_hosts; j++)
			if (moref_in(inv->hosts[j].datastores,
				     inv->hosts[j].n_datastores, &d->moref) &&
			    !moref_in(d->hosts, d->n_hosts, &inv->hosts[j].moref))
				d->hosts[d->n_hosts++] = inv->hosts[j].moref;
	}
	return 0;
}

static int finish_vm(const struct sweep *s, struct fy_vs_vm *vm,
		     struct vs_arena *a)
{
	const struct entity *e = ent_find(s, &vm->moref), *dc, *h;

	vm->path = e ? ent_path(s, e, a) : vs_arena_strdup(a, "");
	dc = e ? ent_datacenter(s, e) : NULL;
	if (dc)
		vm->datacenter = dc->moref;
	vm->datacenter_name = vs_arena_strdup(a, dc ? dc->name : "");
	h = ent_find(s, &vm->host);
	vm->host_name = vs_arena_strdup(a, h ? h->name : vm->host.value);
	if (!vm->path || !vm->datacenter_name || !vm->host_name)
		return fy_err_set(-ENOMEM, "out of memory");
	return 0;
}

int fy_vs_inventory_get(struct fy_vs_client *c, bool with_vms,
			struct fy_vs_inventory **out)
{
	struct fy_vs_inventory *inv;
	struct inv_priv *p;
	struct sweep s;
	size_t i;
	int rc;

	vs_fault_clear();
	*out = NULL;
	inv = calloc(1, sizeof(*inv));
	p = calloc(1, sizeof(*p));
	if (!inv || !p) {
		free(inv);
		free(p);
		return fy_err_set(-ENOMEM, "out of memory");
	}
	vs_arena_init(&p->arena, 0);
	inv->priv_ = p;
	memset(&s, 0, sizeof(s));
	s.c = c;
	s.arena = &p->arena;
	s.inv = inv;
	rc = sweep_run(c, &s, with_vms, true);
	if (rc < 0)
		goto out;
	for (i = 0; i < inv->n_datacenters; i++) {
		struct fy_vs_datacenter *d = &inv->datacenters[i];
		const struct entity *e = ent_find(&s, &d->moref);

		d->name = vs_arena_strdup(s.arena, e ? e->name : "");
		d->path = e ? ent_path(&s, e, s.arena) : vs_arena_strdup(s.arena, "");
		if (!d->name || !d->path) {
			rc = fy_err_set(-ENOMEM, "out of memory");
			goto out;
		}
	}
	for (i = 0; i < inv->n_hosts; i++) {
		const struct entity *dc =
		    ent_datacenter(&s, ent_find(&s, &inv->hosts[i].moref));

		if (dc)
			inv->hosts[i].datacenter = dc->moref;
	}
	for (i = 0; i < inv->n_datastores; i++) {
		const struct entity *dc =
		    ent_datacenter(&s, ent_find(&s, &inv->datastores[i].moref));

		if (dc)
			inv->datastores[i].datacenter = dc->moref;
	}
	for (i = 0; i < inv->n_vms; i++)
		if ((rc = finish_vm(&s, inv->vms[i], s.arena)) < 0)
			goto out;
	rc = join_mounts(inv);
out:
	free(s.ents);
	if (rc < 0) {
		fy_vs_inventory_free(inv);
		return fy_err_wrap(rc, "reading the inventory of %s", c->url);
	}
	*out = inv;
	return 0;
}

const struct fy_vs_datastore *
fy_vs_inventory_datastore(const struct fy_vs_inventory *inv,
			  const struct fy_vs_moref *ds)
{
	size_t i;

	for (i = 0; inv && i < inv->n_datastores; i++)
		if (vs_moref_eq(&inv->datastores[i].moref, ds))
			return &inv->datastores[i];
	return NULL;
}

const struct fy_vs_host *fy_vs_inventory_host(const struct fy_vs_inventory *inv,
					      const struct fy_vs_moref *host)
{
	size_t i;

	for (i = 0; inv && i < inv->n_hosts; i++)
		if (vs_moref_eq(&inv->hosts[i].moref, host))
			return &inv->hosts[i];
	return NULL;
}

bool fy_vs_datastore_mounted_on(const struct fy_vs_datastore *ds,
				const struct fy_vs_moref *host)
{
	return ds && moref_in(ds->hosts, ds->n_hosts, host);
}

/* ---- one VM ------------------------------------------------------------ */

struct vm_priv {
	struct vs_arena arena;
};

void fy_vs_vm_free(struct fy_vs_vm *vm)
{
	struct vm_priv *p;

	if (!vm)
		return;
	p = vm->priv_;
	/* A VM that belongs to an inventory has no arena of its own. */
	if (!p)
		return;
	vs_arena_release(&p->arena);
	free(p);
	free(vm);
}

struct one_vm {
	struct fy_vs_vm *vm;
	struct vs_arena *arena;
	bool found;
	struct fy_vs_moref parent;
};

static int one_vm_object(void *opaque, const struct vs_node *o)
{
	struct one_vm *x = opaque;
	const struct vs_node *v;
	int rc;

	if (x->found)
		return 0;
	rc = vs_parse_vm(o, x->arena, x->vm);
	if (rc < 0)
		return rc;
	if ((v = vs_prop(o, "parent")) || (v = vs_prop(o, "parentVApp")))
		vs_node_moref(v, &x->parent);
	x->found = true;
	return 0;
}

struct name_parent {
	char name[256];
	struct fy_vs_moref parent;
	bool found;
};

static int name_parent_object(void *opaque, const struct vs_node *o)
{
	struct name_parent *np = opaque;
	const struct vs_node *v;

	np->found = true;
	v = vs_prop(o, "name");
	snprintf(np->name, sizeof(np->name), "%s", v ? v->text : "");
	if ((v = vs_prop(o, "parent")) || (v = vs_prop(o, "parentFolder")) ||
	    (v = vs_prop(o, "parentVApp")))
		vs_node_moref(v, &np->parent);
	return 0;
}

/* Walks up from the VM's parent for its path and datacenter: a few round
 * trips instead of reading the whole inventory. */
static int vm_locate(struct fy_vs_client *c, struct fy_vs_vm *vm,
		     const struct fy_vs_moref *parent, struct vs_arena *a)
{
	static const char *const paths[] = { "name", "parent", NULL };
	static const char *const vapp[] = { "name", "parent", "parentFolder",
					    NULL };
	char path[4096];
	size_t nl, pl;
	struct fy_vs_moref cur = *parent;
	struct name_parent np;
	int depth, rc;

	snprintf(path, sizeof(path), "/%s", vm->name);
	for (depth = 0; cur.value[0] && depth < 64; depth++) {
		struct vs_prop_spec spec = {
			cur.type, !strcmp(cur.type, "VirtualApp") ? vapp : paths
		};

		memset(&np, 0, sizeof(np));
		rc = vs_retrieve(c, &cur, false, &spec, 1, name_parent_object,
				 &np);
		if (rc < 0)
			return rc;
		if (!np.parent.value[0])
			break; /* the root folder */
		if (!strcmp(cur.type, "Datacenter") && !vm->datacenter.value[0]) {
			vm->datacenter = cur;
			vm->datacenter_name = vs_arena_strdup(a, np.name);
		}
		nl = strlen(np.name);
		pl = strlen(path);
		if (nl + 1 + pl >= sizeof(path))
			return fy_err_set(-ENAMETOOLONG, "inventory path of %s "
					  "too long", vm->moref.value);
		memmove(path + nl + 1, path, pl + 1);
		path[0] = '/';
		memcpy(path + 1, np.name, nl);
		cur = np.parent;
	}
	vm->path = vs_arena_strdup(a, path);
	if (vm->host.value[0]) {
		struct vs_prop_spec spec = { "HostSystem", paths };

		memset(&np, 0, sizeof(np));
		if (vs_retrieve(c, &vm->host, false, &spec, 1,
				name_parent_object, &np) == 0)
			vm->host_name = vs_arena_strdup(a, np.name);
	}
	if (!vm->host_name)
		vm->host_name = vs_arena_strdup(a, vm->host.value);
	if (!vm->datacenter_name)
		vm->datacenter_name = vs_arena_strdup(a, "");
	if (!vm->path || !vm->host_name || !vm->datacenter_name)
		return fy_err_set(-ENOMEM, "out of memory");
	return 0;
}

static int not_found(int rc, const char *what)
{
	if (rc == -ENOENT ||
	    !strcmp(fy_vs_last_fault()->type, "ManagedObjectNotFound"))
		return fy_err_set(-ENOENT, "no virtual machine %s "
				  "(ManagedObjectNotFound)", what);
	return rc;
}

int fy_vs_vm_get(struct fy_vs_client *c, const struct fy_vs_moref *ref,
		 struct fy_vs_vm **out)
{
	struct vs_prop_spec spec = { "VirtualMachine", vm_paths };
	struct fy_vs_moref m = *ref;
	struct one_vm x;
	struct vm_priv *p;
	struct fy_vs_vm *vm;
	int rc;

	vs_fault_clear();
	*out = NULL;
	if (!m.type[0])
		snprintf(m.type, sizeof(m.type), "VirtualMachine");
	vm = calloc(1, sizeof(*vm));
	p = calloc(1, sizeof(*p));
	if (!vm || !p) {
		free(vm);
		free(p);
		return fy_err_set(-ENOMEM, "out of memory");
	}
	vs_arena_init(&p->arena, 0);
	vm->priv_ = p;
	memset(&x, 0, sizeof(x));
	x.vm = vm;
	x.arena = &p->arena;
	rc = vs_retrieve(c, &m, false, &spec, 1, one_vm_object, &x);
	if (rc < 0) {
		rc = not_found(rc, m.value);
		goto out;
	}
	if (!x.found) {
		rc = fy_err_set(-ENOENT, "no virtual machine %s", m.value);
		goto out;
	}
	rc = vm_locate(c, vm, &x.parent, &p->arena);
out:
	if (rc < 0) {
		fy_vs_vm_free(vm);
		return fy_err_wrap(rc, "reading VM %s", m.value);
	}
	*out = vm;
	return 0;
}

/* ---- a snapshot's devices ---------------------------------------------- */

struct dev_priv {
	struct vs_arena arena;
};

struct snap_devs {
	struct fy_vs_devices *d;
	struct vs_arena *arena;
	bool found;
};

static int snap_object(void *opaque, const struct vs_node *o)
{
	struct snap_devs *x = opaque;

	x->found = true;
	return vs_parse_devices(vs_prop(o, "config.hardware.device"), x->arena,
				x->d);
}

/* Reads PATHS of a snapshot (a moref without a type is a
 * VirtualMachineSnapshot); *found says whether CB saw it. WHAT names the
 * read in the error. */
static int snap_retrieve(struct fy_vs_client *c,
			 const struct fy_vs_moref *snapshot,
			 const char *const *paths,
			 int (*cb)(void *, const struct vs_node *), void *x,
			 const bool *found, const char *what)
{
	struct vs_prop_spec spec = { "VirtualMachineSnapshot", paths };
	struct fy_vs_moref m = *snapshot;
	int rc;

	if (!m.type[0])
		snprintf(m.type, sizeof(m.type), "VirtualMachineSnapshot");
	rc = vs_retrieve(c, &m, false, &spec, 1, cb, x);
	if (rc == 0 && !*found)
		rc = fy_err_set(-ENOENT, "no snapshot %s", m.value);
	if (rc < 0)
		return fy_err_wrap(rc, "reading %s of snapshot %s", what,
				   m.value);
	return 0;
}

int fy_vs_snapshot_devices(struct fy_vs_client *c,
			   const struct fy_vs_moref *snapshot,
			   struct fy_vs_devices **out)
{
	static const char *const paths[] = { "config.hardware.device", NULL };
	struct { struct fy_vs_devices d; struct dev_priv p; } *both;
	struct snap_devs x;
	int rc;

	vs_fault_clear();
	*out = NULL;
	/* One allocation: the devices and the arena behind them. */
	both = calloc(1, sizeof(*both));
	if (!both)
		return fy_err_set(-ENOMEM, "out of memory");
	vs_arena_init(&both->p.arena, 0);
	x.d = &both->d;
	x.arena = &both->p.arena;
	x.found = false;
	rc = snap_retrieve(c, snapshot, paths, snap_object, &x, &x.found,
			   "the devices");
	if (rc < 0) {
		vs_arena_release(&both->p.arena);
		free(both);
		return rc;
	}
	*out = &both->d;
	return 0;
}

void fy_vs_devices_free(struct fy_vs_devices *d)
{
	struct { struct fy_vs_devices d; struct dev_priv p; } *both;

	if (!d)
		return;
	both = (void *)d;
	vs_arena_release(&both->p.arena);
	free(both);
}

/* ---- a snapshot's configuration ---------------------------------------- */

struct snap_config {
	struct fy_vs_vm_config *cfg;
	struct vs_arena *arena;
	bool found;
};

static int snap_config_object(void *opaque, const struct vs_node *o)
{
	struct snap_config *x = opaque;

	x->found = true;
	return vs_parse_vm_config(o, x->arena, x->cfg);
}

int fy_vs_snapshot_config(struct fy_vs_client *c,
			  const struct fy_vs_moref *snapshot,
			  struct fy_vs_vm_config **out)
{
	/* Only what a record keeps: the whole config is large (vApp
	 * properties, tools, resource allocations). */
	static const char *const paths[] = {
		"config.name", "config.guestId", "config.version",
		"config.firmware", "config.bootOptions",
		"config.hardware.numCPU", "config.hardware.numCoresPerSocket",
		"config.hardware.memoryMB", "config.hardware.device",
		"config.extraConfig", NULL,
	};
	struct { struct fy_vs_vm_config cfg; struct dev_priv p; } *both;
	struct snap_config x;
	int rc;

	vs_fault_clear();
	*out = NULL;
	both = calloc(1, sizeof(*both));
	if (!both)
		return fy_err_set(-ENOMEM, "out of memory");
	vs_arena_init(&both->p.arena, 0);
	x.cfg = &both->cfg;
	x.arena = &both->p.arena;
	x.found = false;
	rc = snap_retrieve(c, snapshot, paths, snap_config_object, &x,
			   &x.found, "the configuration");
	if (rc < 0) {
		vs_arena_release(&both->p.arena);
		free(both);
		return rc;
	}
	*out = &both->cfg;
	return 0;
}

void fy_vs_vm_config_free(struct fy_vs_vm_config *cfg)
{
	struct { struct fy_vs_vm_config cfg; struct dev_priv p; } *both;

	if (!cfg)
		return;
	both = (void *)cfg;
	vs_arena_release(&both->p.arena);
	free(both);
}

/* ---- finding a VM ------------------------------------------------------ */

static int find_by_moref(struct fy_vs_client *c, const char *value,
			 struct fy_vs_moref *out)
{
	static const char *const paths[] = { "name", NULL };
	struct vs_prop_spec spec = { "VirtualMachine", paths };
	struct name_parent np;
	struct fy_vs_moref m;
	int rc;

	vs_moref_set(&m, "VirtualMachine", value);
	memset(&np, 0, sizeof(np));
	rc = vs_retrieve(c, &m, false, &spec, 1, name_parent_object, &np);
	if (rc < 0)
		return not_found(rc, value);
	if (!np.found)
		return fy_err_set(-ENOENT, "no virtual machine %s", value);
	*out = m;
	return 0;
}

int vs_find_by_inventory_path(struct fy_vs_client *c, const char *path,
			      const char *what, struct fy_vs_moref *out)
{
	struct vs_reply r;
	struct vs_buf b;
	int rc;

	/* SearchIndex paths start below the root folder. */
	while (*path == '/')
		path++;
	vs_buf_init(&b, 65536);
	vs_buf_elem(&b, "inventoryPath", path);
	rc = b.err ? fy_err_set(b.err, "inventory path too long")
		   : vs_call(c, "FindByInventoryPath", NULL, &c->search_index,
			     b.data, NULL, &r);
	vs_buf_release(&b);
	if (rc < 0)
		return rc;
	if (!r.returnval) {
		vs_reply_release(&r);
		return fy_err_set(-ENOENT, "no %s at inventory path /%s", what,
				  path);
	}
	rc = vs_node_moref(r.returnval, out);
	vs_reply_release(&r);
	return rc;
}

static int find_by_path(struct fy_vs_client *c, const char *path,
			struct fy_vs_moref *out)
{
	int rc = vs_find_by_inventory_path(c, path, "virtual machine", out);

	while (*path == '/')
		path++;
	if (rc == 0 && strcmp(out->type, "VirtualMachine"))
		rc = fy_err_set(-ENOENT, "/%s is a %s, not a virtual machine",
				path, out->type);
	return rc;
}

static int find_by_uuid(struct fy_vs_client *c, const char *uuid,
			bool instance, struct fy_vs_moref *out)
{
	struct vs_reply r;
	struct vs_buf b;
	const struct vs_node *v;
	char list[512] = "";
	size_t n = 0;
	int rc;

	vs_buf_init(&b, 4096);
	vs_buf_elem(&b, "uuid", uuid);
	vs_buf_str(&b, "<vmSearch>true</vmSearch>");
	vs_buf_printf(&b, "<instanceUuid>%s</instanceUuid>",
		      instance ? "true" : "false");
	if (b.err) {
		vs_buf_release(&b);
		return fy_err_set(b.err, "UUID too long");
	}
	/* BIOS UUIDs are shared by clones: ask for all of them (6.5+) and
	 * fall back to FindByUuid on servers without FindAllByUuid. */
	rc = -EOPNOTSUPP;
	if (!instance)
		rc = vs_call(c, "FindAllByUuid", NULL, &c->search_index, b.data,
			     NULL, &r);
	if (rc == -EOPNOTSUPP)
		rc = vs_call(c, "FindByUuid", NULL, &c->search_index, b.data,
			     NULL, &r);
	vs_buf_release(&b);
	if (rc < 0)
		return rc;
	for (v = r.returnval; v; v = vs_next_same(v)) {
		struct fy_vs_moref m;

		if (vs_node_moref(v, &m) < 0)
			continue;
		if (n++ == 0)
			*out = m;
		if (strlen(list) + strlen(m.value) + 3 < sizeof(list))
			snprintf(list + strlen(list), sizeof(list) - strlen(list),
				 "%s%s", n > 1 ? ", " : "", m.value);
	}
	vs_reply_release(&r);
	if (n == 0)
		return fy_err_set(-ENOENT, "no virtual machine with %s UUID %s",
				  instance ? "instance" : "BIOS", uuid);
	if (n > 1)
		return fy_err_set(-EEXIST, "%zu virtual machines share the BIOS "
				  "UUID %s (%s): use the instance UUID or the "
				  "moref", n, uuid, list);
	return 0;
}

bool fy_vs_name_equal(const char *api_name, const char *name)
{
	const char *a = api_name, *n = name;

	while (*a && *n) {
		int hi, lo;

		if (a[0] == '%' && (hi = fy_hex_digit(a[1])) >= 0 &&
		    (lo = fy_hex_digit(a[2])) >= 0) {
			char c = (char)(hi << 4 | lo);

			/* Only what vSphere escapes; any other %xx is
			 * literal text of the name. */
			if (c == '%' || c == '/' || c == '\\') {
				if (*n != c)
					return false;
				a += 3;
				n++;
				continue;
			}
		}
		if (*a != *n)
			return false;
		a++;
		n++;
	}
	return !*a && !*n;
}

static int find_by_name(struct fy_vs_client *c, const char *name,
			struct fy_vs_moref *out)
{
	struct vs_arena arena;
	struct sweep s;
	char list[600] = "";
	size_t i, n = 0;
	int rc;

	vs_arena_init(&arena, 0);
	memset(&s, 0, sizeof(s));
	s.c = c;
	s.arena = &arena;
	rc = sweep_run(c, &s, true, false);
	if (rc < 0)
		goto out;
	for (i = 0; i < s.n_ents; i++) {
		const struct entity *e = &s.ents[i];
		char *path;

		if (strcmp(e->moref.type, "VirtualMachine") ||
		    !fy_vs_name_equal(e->name, name))
			continue;
		if (n++ == 0)
			*out = e->moref;
		path = ent_path(&s, e, &arena);
		if (path) {
			size_t used = strlen(list);
			int w = snprintf(list + used, sizeof(list) - used,
					 "%s%s (%s)", n > 1 ? ", " : "", path,
					 e->moref.value);

			/* A list too long for the message keeps what fit. */
			if (w < 0 || (size_t)w >= sizeof(list) - used)
				list[used] = 0;
		}
	}
	if (n == 0)
		rc = fy_err_set(-ENOENT, "no virtual machine named '%s'", name);
	else if (n > 1)
		rc = fy_err_set(-EEXIST, "%zu virtual machines are named '%s': "
				"%s; name one by path or moref", n, name, list);
out:
	free(s.ents);
	vs_arena_release(&arena);
	return rc;
}

int fy_vs_find_vm(struct fy_vs_client *c, enum fy_vs_find_by by,
		  const char *key, struct fy_vs_moref *out)
{
	static const char *const names[] = { "moref", "name", "path",
					     "instance UUID", "BIOS UUID" };
	int rc;

	vs_fault_clear();
	memset(out, 0, sizeof(*out));
	if (!key || !*key)
		return fy_err_set(-EINVAL, "empty VM %s", names[by]);
	switch (by) {
	case FY_VS_BY_MOREF:
		rc = find_by_moref(c, key, out);
		break;
	case FY_VS_BY_NAME:
		rc = find_by_name(c, key, out);
		break;
	case FY_VS_BY_PATH:
		rc = find_by_path(c, key, out);
		break;
	case FY_VS_BY_INSTANCE_UUID:
		rc = find_by_uuid(c, key, true, out);
		break;
	case FY_VS_BY_BIOS_UUID:
		rc = find_by_uuid(c, key, false, out);
		break;
	default:
		return fy_err_set(-EINVAL, "unknown way of finding a VM");
	}
	if (rc < 0 && rc != -ENOENT && rc != -EEXIST)
		return fy_err_wrap(rc, "finding VM by %s '%s'", names[by], key);
	return rc;
}

static bool looks_like_uuid(const char *s)
{
	size_t i, hex = 0;

	for (i = 0; s[i]; i++) {
		if (isxdigit((unsigned char)s[i]))
			hex++;
		else if (s[i] != '-' && s[i] != ' ')
			return false;
	}
	return hex == 32;
}

int fy_vs_find_vm_spec(struct fy_vs_client *c, const char *spec,
		       struct fy_vs_moref *out)
{
	static const struct {
		const char *prefix;
		enum fy_vs_find_by by;
	} prefixes[] = {
		{ "moref:", FY_VS_BY_MOREF }, { "name:", FY_VS_BY_NAME },
		{ "path:", FY_VS_BY_PATH }, { "uuid:", FY_VS_BY_INSTANCE_UUID },
		{ "bios:", FY_VS_BY_BIOS_UUID },
	};
	size_t i;
	int rc;

	for (i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++)
		if (!strncmp(spec, prefixes[i].prefix, strlen(prefixes[i].prefix)))
			return fy_vs_find_vm(c, prefixes[i].by,
					     spec + strlen(prefixes[i].prefix),
					     out);
	if (!strncmp(spec, "vm-", 3) && spec[3] &&
	    strspn(spec + 3, "0123456789") == strlen(spec + 3))
		return fy_vs_find_vm(c, FY_VS_BY_MOREF, spec, out);
	if (spec[0] == '/')
		return fy_vs_find_vm(c, FY_VS_BY_PATH, spec, out);
	if (looks_like_uuid(spec)) {
		rc = fy_vs_find_vm(c, FY_VS_BY_INSTANCE_UUID, spec, out);
		if (rc != -ENOENT)
			return rc;
		return fy_vs_find_vm(c, FY_VS_BY_BIOS_UUID, spec, out);
	}
	return fy_vs_find_vm(c, FY_VS_BY_NAME, spec, out);
}
