# hotadd tests: the real ferry-agent against ferry-vcsim with an emulated
# proxy guest (--guest-root: loop devices, fake sysfs) and a real
# ferry-repo. Included by tests/CMakeLists.txt (paths relative to tests/);
# label "hotadd". Exit 77 (skipped) without root or losetup.
#   ctest -L hotadd
if(NOT TARGET ferry-vcsim)
  message(STATUS "hotadd tests: ferry-vcsim is not built; skipping them")
  return()
endif()

function(ferry_hotadd_test name)
  add_test(NAME hotadd.${name}
    COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/hotadd/${name}.sh)
  set_tests_properties(hotadd.${name} PROPERTIES
    LABELS hotadd TIMEOUT 300 SKIP_RETURN_CODE 77
    ENVIRONMENT "BIN=${CMAKE_BINARY_DIR}/bin;TOOLS=${CMAKE_CURRENT_SOURCE_DIR}/tools;VCSIM=${CMAKE_BINARY_DIR}/bin/ferry-vcsim")
endfunction()

ferry_hotadd_test(backup)
ferry_hotadd_test(no_slot)
ferry_hotadd_test(crash)
ferry_hotadd_test(detached_by_hand)
ferry_hotadd_test(two_jobs)
ferry_hotadd_test(wrong_proxy)
ferry_hotadd_test(attach_ahead)
ferry_hotadd_test(no_wwid)
ferry_hotadd_test(cbt_full)
ferry_hotadd_test(cbt_incr)
ferry_hotadd_test(decide)

# A VM job killed mid-read, per transport: crash_job.sh MODE.
foreach(mode https nbd hotadd)
  add_test(NAME hotadd.crash_${mode}
    COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/hotadd/crash_job.sh ${mode})
  set_tests_properties(hotadd.crash_${mode} PROPERTIES
    LABELS hotadd TIMEOUT 300 SKIP_RETURN_CODE 77
    ENVIRONMENT "BIN=${CMAKE_BINARY_DIR}/bin;TOOLS=${CMAKE_CURRENT_SOURCE_DIR}/tools;VCSIM=${CMAKE_BINARY_DIR}/bin/ferry-vcsim")
endforeach()

# The journal parser's unit test.
add_executable(test_journal hotadd/test_journal.c)
target_link_libraries(test_journal PRIVATE ferry_hotadd)
set_target_properties(test_journal PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)
add_test(NAME hotadd.journal COMMAND test_journal)
set_tests_properties(hotadd.journal PROPERTIES LABELS "hotadd;unit" TIMEOUT 60)
