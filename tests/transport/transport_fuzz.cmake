# libFuzzer target for the VMDK descriptor parser (FERRY_FUZZ builds); its
# seeds in fuzz/fuzz_vmdk.seeds/ are also transport.vmdk's samples.
ferry_fuzz_target(fuzz_vmdk ferry_vsphere)

# The one parser of transport lists (agent/transport.c, compiled in: it
# needs nbd, vsphere, hotadd and san, not the whole agent).
ferry_fuzz_target(fuzz_transport_list ferry_nbd ferry_vsphere ferry_hotadd ferry_san)
target_sources(fuzz_transport_list PRIVATE ${CMAKE_SOURCE_DIR}/agent/transport.c)
