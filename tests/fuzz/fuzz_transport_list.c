/*
 * libFuzzer target for the one parser of transport lists
 * (agent/transport.c), which reads --transport, ferry.transports and the
 * control protocol's StartBackup.transports: any bytes give a list or an
 * error, never a crash; a list that parses names distinct modes of the
 * table and reads back as the input (the default for an empty one).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agent/transport.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const struct fy_transport *m[FY_TRANSPORT_N_MODES];
	char in[256], out[256] = "";
	unsigned n = 99, i, k;

	if (size >= sizeof(in))
		return 0;
	memcpy(in, data, size);
	in[size] = '\0';
	if (fy_transport_list_parse(in, m, FY_TRANSPORT_N_MODES, &n) < 0) {
		if (n != 0)
			abort();
		return 0;
	}
	if (n == 0 || n > FY_TRANSPORT_N_MODES)
		abort();
	for (i = 0; i < n; i++) {
		if (m[i] < fy_transports ||
		    m[i] >= fy_transports + FY_TRANSPORT_N_MODES)
			abort();
		for (k = 0; k < i; k++)
			if (m[k] == m[i])
				abort();
		strcat(out, i ? ":" : "");
		strcat(out, m[i]->name);
	}
	if (strcmp(out, in[0] ? in : FY_TRANSPORT_DEFAULT))
		abort();
	return 0;
}
