# libFuzzer target for the NBD reply parser (nbd/reply.c). Included by
# tests/CMakeLists.txt in FERRY_FUZZ builds.
ferry_fuzz_target(fuzz_nbd_reply ferry_nbd)
set_tests_properties(fuzz.fuzz_nbd_reply PROPERTIES LABELS "fuzz;nbd")
