/*
 * The PropertyCollector: RetrievePropertiesEx in pages of
 * ferry.vcenter.pageSize objects, ContinueRetrievePropertiesEx for the next
 * ones, CancelRetrievePropertiesEx when a caller stops early. Only one page
 * is in memory at a time.
 */
#include "vsphere/vs_int.h"

#include <errno.h>
#include <string.h>

#define SPEC_MAX (1u << 20)

const struct vs_node *vs_prop(const struct vs_node *object, const char *name)
{
	const struct vs_node *p;

	for (p = vs_child(object, "propSet"); p; p = vs_next_same(p)) {
		const char *n = vs_child_text(p, "name");

		if (n && !strcmp(n, name))
			return vs_child(p, "val");
	}
	return NULL;
}

/* A missingSet entry whose fault is NotAuthenticated: the simulator answers
 * an expired session that way instead of with a fault. */
static bool page_unauthenticated(const struct vs_node *result)
{
	const struct vs_node *o, *m;

	for (o = vs_child(result, "objects"); o; o = vs_next_same(o))
		for (m = vs_child(o, "missingSet"); m; m = vs_next_same(m)) {
			const struct vs_node *f = vs_path(m, "fault/fault");

			if (f && !strcmp(vs_node_type(f), "NotAuthenticated"))
				return true;
		}
	return false;
}

static void log_missing(const struct vs_node *result)
{
	const struct vs_node *o, *m;

	for (o = vs_child(result, "objects"); o; o = vs_next_same(o))
		for (m = vs_child(o, "missingSet"); m; m = vs_next_same(m)) {
			const struct vs_node *f = vs_path(m, "fault/fault");
			struct fy_vs_moref obj;

			vs_node_moref(vs_child(o, "obj"), &obj);
			fy_debug("vsphere: property %s of %s not returned: %s",
				 vs_child_text(m, "path") ? vs_child_text(m, "path")
							  : "?",
				 obj.value, f ? vs_node_type(f) : "?");
		}
}

static int dispatch(const struct vs_node *result, vs_object_cb cb,
		    void *opaque)
{
	const struct vs_node *o;
	int rc;

	log_missing(result);
	for (o = vs_child(result, "objects"); o; o = vs_next_same(o)) {
		rc = cb(opaque, o);
		if (rc < 0)
			return rc;
	}
	return 0;
}

static void cancel(struct fy_vs_client *c, const char *token)
{
	struct vs_reply r;
	struct vs_buf b;

	vs_buf_init(&b, 4096);
	vs_buf_elem(&b, "token", token);
	if (!b.err && vs_call(c, "CancelRetrievePropertiesEx", NULL,
			      &c->property_collector, b.data, NULL, &r) == 0)
		vs_reply_release(&r);
	vs_buf_release(&b);
}

int vs_retrieve(struct fy_vs_client *c, const struct fy_vs_moref *obj,
		bool view, const struct vs_prop_spec *specs, size_t n_specs,
		vs_object_cb cb, void *opaque)
{
	struct vs_reply r = { 0 };
	char token[256] = "";
	struct vs_buf b;
	size_t i, pages = 0;
	int rc, attempt = 0;

	vs_buf_init(&b, SPEC_MAX);
	vs_buf_str(&b, "<specSet>");
	for (i = 0; i < n_specs; i++) {
		const char *const *p;

		vs_buf_str(&b, "<propSet>");
		vs_buf_elem(&b, "type", specs[i].type);
		vs_buf_str(&b, "<all>false</all>");
		for (p = specs[i].paths; p && *p; p++)
			vs_buf_elem(&b, "pathSet", *p);
		vs_buf_str(&b, "</propSet>");
	}
	vs_buf_str(&b, "<objectSet>");
	vs_buf_moref(&b, "obj", obj);
	if (view)
		vs_buf_str(&b, "<skip>true</skip>"
			   "<selectSet xsi:type=\"TraversalSpec\">"
			   "<name>traverseView</name><type>ContainerView</type>"
			   "<path>view</path><skip>false</skip></selectSet>");
	else
		vs_buf_str(&b, "<skip>false</skip>");
	vs_buf_str(&b, "</objectSet></specSet>");
	vs_buf_printf(&b, "<options><maxObjects>%u</maxObjects></options>",
		      c->page_size);
	if (b.err) {
		rc = fy_err_set(b.err, "property request too large");
		goto out;
	}
again:
	rc = vs_call(c, "RetrievePropertiesEx", NULL, &c->property_collector,
		     b.data, obj->value, &r);
	if (rc < 0)
		goto out;
	if (page_unauthenticated(r.returnval)) {
		/* The login this request went out under: if another thread
		 * has logged in since, its session is used, not a new one. */
		uint64_t gen = r.generation;

		vs_reply_release(&r);
		if (attempt++ >= 2) {
			rc = fy_err_set(-EACCES, "RetrievePropertiesEx on %s: "
					"session not authenticated", obj->value);
			goto out;
		}
		rc = vs_login(c, gen);
		if (rc < 0)
			goto out;
		goto again;
	}
	for (;;) {
		const char *t;

		pages++;
		/* No returnval: nothing matched. */
		if (!r.returnval)
			break;
		t = vs_child_text(r.returnval, "token");
		if (t && strlen(t) >= sizeof(token)) {
			rc = fy_err_set(-EBADMSG, "RetrievePropertiesEx: token "
					"too long");
			goto out;
		}
		snprintf(token, sizeof(token), "%s", t ? t : "");
		rc = dispatch(r.returnval, cb, opaque);
		vs_reply_release(&r);
		if (rc < 0) {
			if (token[0])
				cancel(c, token);
			goto out;
		}
		if (!token[0])
			break;
		vs_buf_release(&b);
		vs_buf_init(&b, 4096);
		vs_buf_elem(&b, "token", token);
		rc = vs_call(c, "ContinueRetrievePropertiesEx", NULL,
			     &c->property_collector, b.data, obj->value, &r);
		if (rc < 0)
			goto out;
		if (page_unauthenticated(r.returnval)) {
			rc = fy_err_set(-EACCES, "session expired while reading "
					"page %zu of %s", pages + 1, obj->value);
			goto out;
		}
	}
	fy_log(FY_LOG_TRIVIA, "vsphere: read %s in %zu page(s)", obj->value,
	       pages);
out:
	vs_reply_release(&r);
	vs_buf_release(&b);
	return rc;
}

int vs_view_create(struct fy_vs_client *c, const char *const *types,
		   struct fy_vs_moref *view)
{
	struct vs_reply r;
	struct vs_buf b;
	int rc;

	vs_buf_init(&b, 65536);
	vs_buf_moref(&b, "container", &c->root_folder);
	for (; *types; types++)
		vs_buf_elem(&b, "type", *types);
	vs_buf_str(&b, "<recursive>true</recursive>");
	rc = b.err ? fy_err_set(b.err, "view request too large")
		   : vs_call(c, "CreateContainerView", NULL, &c->view_manager,
			     b.data, NULL, &r);
	vs_buf_release(&b);
	if (rc < 0)
		return rc;
	rc = vs_node_moref(r.returnval, view);
	if (rc == 0 && !view->value[0])
		rc = fy_err_set(-EBADMSG, "CreateContainerView returned no view");
	vs_reply_release(&r);
	return rc;
}

void vs_view_destroy(struct fy_vs_client *c, const struct fy_vs_moref *view)
{
	struct vs_reply r;

	if (!view->value[0])
		return;
	if (vs_call(c, "DestroyView", NULL, view, NULL, NULL, &r) == 0)
		vs_reply_release(&r);
}
