/*
 * SOAP envelopes: from the bytes of a response to the method's returnval or
 * to a fault that names its type, its object and what was missing.
 */
#include "vsphere/vs_int.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static _Thread_local struct fy_vs_fault last_fault;

const struct fy_vs_fault *fy_vs_last_fault(void)
{
	return &last_fault;
}

void vs_fault_record(const struct fy_vs_fault *f)
{
	if (f != &last_fault)
		last_fault = *f;
}

void vs_fault_clear(void)
{
	memset(&last_fault, 0, sizeof(last_fault));
}

void fy_vs_limits_default(struct fy_vs_limits *lim)
{
	lim->max_response = 64u << 20;
	lim->max_depth = 200;
	lim->max_elements = 1000000;
	lim->max_text = 4u << 20;
}

/* Copies text, dropping control characters so that a hostile server cannot
 * write escape sequences into our logs. */
static void copy_clean(char *dst, size_t dstlen, const char *src)
{
	size_t i = 0;

	if (!dstlen)
		return;
	for (; src && *src && i + 1 < dstlen; src++) {
		unsigned char ch = (unsigned char)*src;

		dst[i++] = (ch < 0x20 || ch == 0x7f) ? ' ' : (char)ch;
	}
	dst[i] = '\0';
	/* Servers pad messages with newlines: trim the ends. */
	while (i && dst[i - 1] == ' ')
		dst[--i] = '\0';
}

static const struct {
	const char *type;
	int code;
} fault_errnos[] = {
	{ "NotAuthenticated", -EACCES },
	{ "InvalidLogin", -EACCES },
	{ "NoPermission", -EPERM },
	{ "NoPermissionOnHost", -EPERM },
	{ "RestrictedVersion", -EPERM },
	{ "MethodDisabled", -EPERM },
	{ "MethodAlreadyDisabledFault", -EALREADY },
	{ "FileLocked", -EBUSY },
	{ "TaskInProgress", -EBUSY },
	{ "InvalidState", -EBUSY },
	{ "InvalidPowerState", -EBUSY },
	{ "InvalidHostState", -EBUSY },
	{ "InvalidDatastoreState", -EBUSY },
	{ "ConcurrentAccess", -EBUSY },
	{ "ManagedObjectNotFound", -ENOENT },
	{ "NotFound", -ENOENT },
	{ "FileNotFound", -ENOENT },
	{ "FileAlreadyExists", -EEXIST },
	{ "DuplicateName", -EEXIST },
	{ "NotSupported", -EOPNOTSUPP },
	{ "NotImplemented", -EOPNOTSUPP },
	{ "MethodNotFound", -EOPNOTSUPP },
	{ "InvalidArgument", -EINVAL },
	{ "InvalidRequest", -EINVAL },
	{ "InvalidProperty", -EINVAL },
	{ "InvalidType", -EINVAL },
	{ "InvalidDeviceSpec", -EINVAL },
	{ "InvalidController", -EINVAL },
	{ "InvalidDeviceBacking", -EINVAL },
	{ "RequestCanceled", -ECANCELED },
	{ "Timedout", -ETIMEDOUT },
	{ "NoDiskSpace", -ENOSPC },
	{ "InsufficientResourcesFault", -ENOSPC },
};

int vs_fault_errno(const char *type)
{
	size_t i;

	for (i = 0; i < sizeof(fault_errnos) / sizeof(fault_errnos[0]); i++)
		if (!strcmp(type, fault_errnos[i].type))
			return fault_errnos[i].code;
	return -EIO;
}

/* What each fault means when the server sent no words of its own (the
 * simulator sends an empty faultstring for NotAuthenticated). */
static const char *default_message(const char *type)
{
	if (!strcmp(type, "NotAuthenticated"))
		return "the session is not authenticated (expired or logged out)";
	if (!strcmp(type, "InvalidLogin"))
		return "wrong user name or password";
	if (!strcmp(type, "NoPermission"))
		return "permission denied";
	if (!strcmp(type, "MethodDisabled"))
		return "the method is disabled on this object";
	if (!strcmp(type, "ManagedObjectNotFound"))
		return "the object does not exist (any more)";
	if (!strcmp(type, "FileLocked"))
		return "a file is locked by another user of it";
	if (!strcmp(type, "TaskInProgress"))
		return "another task is running on the object";
	if (!strcmp(type, "InvalidState"))
		return "not allowed in the object's current state";
	return "";
}

void vs_fault_from_node(const struct vs_node *fn, const char *message,
			struct fy_vs_fault *f)
{
	const struct vs_node *n, *obj = NULL;
	const char *type, *t;
	char buf[sizeof(f->type)];
	size_t len;

	f->type[0] = f->privilege[0] = f->detail[0] = '\0';
	memset(&f->object, 0, sizeof(f->object));
	copy_clean(f->message, sizeof(f->message), message);
	if (!fn) {
		snprintf(f->type, sizeof(f->type), "%s", "SystemError");
		return;
	}
	type = vs_node_type(fn);
	/* The detail element is "<Type>Fault" when no xsi:type says better. */
	if (!fn->xsi_type) {
		len = strlen(type);
		if (len > 5 && !strcmp(type + len - 5, "Fault") &&
		    strcmp(type, "MethodAlreadyDisabledFault") &&
		    len - 5 < sizeof(buf)) {
			memcpy(buf, type, len - 5);
			buf[len - 5] = '\0';
			type = buf;
		}
	}
	copy_clean(f->type, sizeof(f->type), type);

	/* Fields of the fault types callers act on. */
	if ((n = vs_child(fn, "privilegeId")))
		copy_clean(f->privilege, sizeof(f->privilege), n->text);
	if (!f->privilege[0] && (n = vs_child(fn, "missingPrivileges"))) {
		/* 7.0+: missingPrivileges{entity, privileges[]} */
		const struct vs_node *p = vs_child(n, "privileges");

		if (p)
			copy_clean(f->privilege, sizeof(f->privilege), p->text);
		if (!obj)
			obj = vs_child(n, "entity");
	}
	if (!obj)
		obj = vs_child(fn, "object");
	if (!obj)
		obj = vs_child(fn, "obj");
	if (!obj)
		obj = vs_child(fn, "entity");
	if (obj && !obj->first)
		vs_node_moref(obj, &f->object);
	if ((t = vs_child_text(fn, "file")))
		snprintf(f->detail, sizeof(f->detail), "file %s", t);
	else if ((n = vs_child(fn, "task")))
		snprintf(f->detail, sizeof(f->detail), "task %s", n->text);
	else if ((t = vs_child_text(fn, "source")))
		snprintf(f->detail, sizeof(f->detail), "disabled by %s", t);
	else if ((t = vs_child_text(fn, "sourceId")))
		snprintf(f->detail, sizeof(f->detail), "disabled by %s", t);
	else if ((t = vs_child_text(fn, "invalidProperty")))
		snprintf(f->detail, sizeof(f->detail), "property %s", t);
	else if ((t = vs_child_text(fn, "name")))
		snprintf(f->detail, sizeof(f->detail), "%s", t);
	else if ((t = vs_child_text(fn, "method")))
		snprintf(f->detail, sizeof(f->detail), "method %s", t);
	copy_clean(f->detail, sizeof(f->detail), f->detail);

	/* faultMessage[] carries the words when faultstring has none. */
	if (!f->message[0]) {
		n = vs_child(fn, "faultMessage");
		if (n && (t = vs_child_text(n, "message")))
			copy_clean(f->message, sizeof(f->message), t);
	}
	if (!f->message[0])
		copy_clean(f->message, sizeof(f->message),
			   default_message(f->type));
}

void vs_fault_describe(const struct fy_vs_fault *f, char *out, size_t outlen)
{
	size_t n = 0;

#define ADD(...)                                                        \
	do {                                                            \
		if (n < outlen)                                         \
			n += (size_t)snprintf(out + n, outlen - n,      \
					      __VA_ARGS__);             \
	} while (0)

	out[0] = '\0';
	ADD("%s", f->type);
	if (f->privilege[0])
		ADD(" (missing privilege %s%s%s)", f->privilege,
		    f->object.value[0] ? " on " : "", f->object.value);
	else if (f->object.value[0])
		ADD(" on %s", f->object.value);
	if (f->detail[0])
		ADD(" [%s]", f->detail);
	if (f->message[0])
		ADD(": %s", f->message);
#undef ADD
}

bool vs_looks_like_html(const char *data, size_t len, char *title,
			size_t titlelen)
{
	size_t i = 0, scan = len < 4096 ? len : 4096;
	const char *t, *end;

	if (titlelen)
		title[0] = '\0';
	while (i < scan && isspace((unsigned char)data[i]))
		i++;
	if (scan - i < 5 ||
	    (strncasecmp(data + i, "<!doctype html", scan - i < 14 ? scan - i : 14) &&
	     strncasecmp(data + i, "<html", 5)))
		return false;
	/* The title says what the proxy or server in front of vCenter meant. */
	t = memmem(data, scan, "<title>", 7);
	if (!t)
		t = memmem(data, scan, "<TITLE>", 7);
	if (t && titlelen) {
		t += 7;
		end = memchr(t, '<', (size_t)(data + scan - t));
		if (end) {
			size_t n = (size_t)(end - t);
			char tmp[160];

			if (n >= sizeof(tmp))
				n = sizeof(tmp) - 1;
			memcpy(tmp, t, n);
			tmp[n] = '\0';
			copy_clean(title, titlelen, tmp);
		}
	}
	return true;
}

void vs_reply_release(struct vs_reply *r)
{
	if (!r)
		return;
	vs_doc_free(r->doc);
	memset(r, 0, sizeof(*r));
}

static bool is_soap(const struct vs_node *n, const char *name)
{
	return n && !strcmp(n->name, name) && !strcmp(n->ns, VS_NS_SOAPENV);
}

int vs_soap_parse(const char *data, size_t len, const struct fy_vs_limits *lim,
		  const char *method, struct vs_reply *out,
		  struct fy_vs_fault *fault)
{
	const struct vs_node *body, *first, *detail, *fn;
	char title[128], expect[128];
	struct vs_doc *doc = NULL;
	int rc;

	memset(out, 0, sizeof(*out));
	memset(fault, 0, sizeof(*fault));
	snprintf(fault->method, sizeof(fault->method), "%s", method);
	if (len == 0)
		return fy_err_set(-EBADMSG, "empty response");
	if (vs_looks_like_html(data, len, title, sizeof(title)))
		return fy_err_set(-EBADMSG, "an HTML page instead of SOAP%s%s%s",
				  title[0] ? " (\"" : "", title,
				  title[0] ? "\")" : "");
	rc = vs_xml_parse(data, len, lim, &doc);
	if (rc < 0)
		return fy_err_wrap(rc, "malformed SOAP response");
	if (!is_soap(doc->root, "Envelope")) {
		rc = fy_err_set(-EBADMSG, "not a SOAP envelope (root element <%s>)",
				doc->root->name);
		goto out;
	}
	body = vs_child(doc->root, "Body");
	if (!is_soap(body, "Body")) {
		rc = fy_err_set(-EBADMSG, "SOAP envelope without a Body");
		goto out;
	}
	first = vs_first(body);
	if (!first) {
		rc = fy_err_set(-EBADMSG, "empty SOAP Body");
		goto out;
	}
	if (is_soap(first, "Fault")) {
		char desc[1024];

		detail = vs_child(first, "detail");
		fn = vs_first(detail);
		vs_fault_from_node(fn, vs_child_text(first, "faultstring"),
				   fault);
		if (!fn) {
			/* A fault with no detail: its faultcode is all we
			 * have ("ServerFaultCode"). */
			const char *code = vs_child_text(first, "faultcode");

			copy_clean(fault->type, sizeof(fault->type),
				   code && *code ? code : "SystemError");
		}
		vs_fault_describe(fault, desc, sizeof(desc));
		rc = fy_err_set(vs_fault_errno(fault->type), "%s", desc);
		goto out;
	}
	snprintf(expect, sizeof(expect), "%sResponse", method);
	if (method[0] && strcmp(first->name, expect)) {
		rc = fy_err_set(-EBADMSG, "expected <%s>, got <%s>", expect,
				first->name);
		goto out;
	}
	out->doc = doc;
	out->response = (struct vs_node *)first;
	out->returnval = vs_child(first, "returnval");
	doc = NULL;
	rc = 0;
out:
	vs_doc_free(doc);
	return rc;
}
