# The journal parser's fuzzer (FERRY_FUZZ builds; included from
# tests/CMakeLists.txt).
if(TARGET ferry_hotadd)
  ferry_fuzz_target(fuzz_journal ferry_hotadd)
endif()
