# The san transport's tests (label "san"): the VMFS6 reader against images
# written by tests/tools/mkvmfs6 and read by Debian's vmfs6-tools as the
# independent oracle, damaged volumes, and backups through vmfs: sources.
# Included by tests/CMakeLists.txt, so paths are relative to tests/.
add_executable(vmfs_cat san/vmfs_cat.c)
target_link_libraries(vmfs_cat PRIVATE ferry_san)
set_target_properties(vmfs_cat PROPERTIES
  RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)

function(ferry_san_test name)
  add_test(NAME san.${name}
    COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/san/${name}.sh)
  set_tests_properties(san.${name} PROPERTIES
    LABELS "san;transport" TIMEOUT 300 SKIP_RETURN_CODE 77
    ENVIRONMENT "BIN=${CMAKE_BINARY_DIR}/bin;TESTS=${CMAKE_BINARY_DIR}/tests;TOOLS=${CMAKE_CURRENT_SOURCE_DIR}/tools")
endfunction()

ferry_san_test(oracle)
ferry_san_test(damaged)
ferry_san_test(backup)

# The VM job over san against ferry-vcsim's VMFS datastore (loop devices:
# skipped without root).
if(TARGET ferry-vcsim)
  add_test(NAME san.vm COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/san/vm.sh)
  set_tests_properties(san.vm PROPERTIES
    LABELS "san;transport" TIMEOUT 400 SKIP_RETURN_CODE 77
    ENVIRONMENT "BIN=${CMAKE_BINARY_DIR}/bin;TOOLS=${CMAKE_CURRENT_SOURCE_DIR}/tools;VCSIM=${CMAKE_BINARY_DIR}/bin/ferry-vcsim")
endif()
