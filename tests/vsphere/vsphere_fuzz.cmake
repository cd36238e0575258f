# libFuzzer target for the SOAP response parser (FERRY_FUZZ builds).
ferry_fuzz_target(fuzz_soap ferry_vsphere)
