/*
 * libFuzzer target for the SOAP response parser and the typed parsers
 * behind it (VMs and devices, snapshots, task info, changed areas,
 * vimServiceVersions.xml): any bytes give a result or an error, never a
 * crash, and memory stays within the limits.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "vsphere/vs_int.h"

static void typed(const struct vs_reply *r)
{
	const struct vs_node *o;
	struct vs_change_info ci;
	struct vs_task_info ti;
	struct vs_arena a;

	vs_arena_init(&a, 64u << 20);
	for (o = vs_child(r->returnval, "objects"); o; o = vs_next_same(o)) {
		struct fy_vs_vm vm;

		memset(&vm, 0, sizeof(vm));
		vs_parse_vm(o, &a, &vm);
		vs_parse_task_info(vs_prop(o, "info"), &ti);
	}
	vs_parse_change_info(r->returnval, &ci);
	vs_arena_release(&a);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fy_vs_limits lim;
	struct fy_vs_fault fault;
	struct vs_reply r;
	char version[32];

	fy_vs_limits_default(&lim);
	lim.max_response = 1u << 20;
	lim.max_elements = 20000;
	lim.max_text = 64u << 10;
	/* The method is not known in advance: "" accepts any response. */
	if (vs_soap_parse((const char *)data, size, &lim, "", &r, &fault) == 0) {
		typed(&r);
		vs_reply_release(&r);
	}
	vs_pick_version((const char *)data, size, &lim, version,
			sizeof(version));
	return 0;
}
