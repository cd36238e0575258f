# libFuzzer target for the VMDK descriptor parser (FERRY_FUZZ builds); its
# seeds in fuzz/fuzz_vmdk.seeds/ are also transport.vmdk's samples.
ferry_fuzz_target(fuzz_vmdk ferry_vsphere)
