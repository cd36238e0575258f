/*
 * libFuzzer target for the OVF environment parser (ovf-env.xml, what a
 * vCenter admin or a CD gives the proxy appliance): any bytes give 0 or a
 * message, never a crash, a leak or a read past len; a parsed environment
 * keeps every bound.
 */
#include "vsphere/vsphere.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fy_ovf_env *env = NULL;
	size_t i, j;

	if (fy_ovf_env_parse((const char *)data, size, &env) < 0) {
		if (env || !fy_err_msg()[0])
			abort();
		return 0;
	}
	if (env->n > FY_OVF_ENV_MAX_PROPERTIES)
		abort();
	for (i = 0; i < env->n; i++) {
		if (!env->props[i].key[0] ||
		    strlen(env->props[i].key) > FY_OVF_ENV_MAX_KEY ||
		    strlen(env->props[i].value) > FY_OVF_ENV_MAX_VALUE)
			abort();
		for (j = 0; j < i; j++)
			if (!strcmp(env->props[i].key, env->props[j].key))
				abort();
		if (fy_ovf_env_get(env, env->props[i].key) != env->props[i].value)
			abort();
	}
	fy_ovf_env_free(env);
	return 0;
}
