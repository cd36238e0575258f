# vsphere/ tests (label "vsphere"): the SOAP parser on saved samples, the
# client's multi-call logic against a scripted transport, a misbehaving
# HTTPS server, and the simulated vCenter (tests/vcsim) when it is built.
set(FY_VS_SAMPLES ${CMAKE_CURRENT_SOURCE_DIR}/vsphere/samples)

function(ferry_vsphere_program name)
  add_executable(${name} ${ARGN})
  target_link_libraries(${name} PRIVATE ferry_vsphere)
  set_target_properties(${name} PROPERTIES
    RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)
endfunction()

ferry_vsphere_program(test_vs_parse vsphere/test_vs_parse.c)
ferry_vsphere_program(test_vs_client vsphere/test_vs_client.c)
ferry_vsphere_program(test_vs_hostile vsphere/test_vs_hostile.c)
ferry_vsphere_program(test_vs_sim vsphere/test_vs_sim.c)
# A snapshot's configuration to a backup's VM record (agent/vm_record.c).
ferry_vsphere_program(test_vm_record vsphere/test_vm_record.c)
target_link_libraries(test_vm_record PRIVATE ferry_agent)

add_test(NAME vsphere.parse COMMAND test_vs_parse ${FY_VS_SAMPLES})
add_test(NAME vsphere.client COMMAND test_vs_client ${FY_VS_SAMPLES})
add_test(NAME vsphere.vm_record COMMAND test_vm_record ${FY_VS_SAMPLES})
add_test(NAME vsphere.hostile
  COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/vsphere/hostile.sh)
add_test(NAME vsphere.vcsim
  COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/vsphere/vcsim.sh)
add_test(NAME vsphere.vcsim_esx
  COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/vsphere/vcsim.sh --esx)
set_tests_properties(vsphere.parse vsphere.client vsphere.vm_record PROPERTIES
  LABELS "vsphere;unit" TIMEOUT 120)
set_tests_properties(vsphere.hostile vsphere.vcsim vsphere.vcsim_esx PROPERTIES
  LABELS "vsphere;integration" TIMEOUT 300 SKIP_RETURN_CODE 77
  ENVIRONMENT "BIN=${CMAKE_BINARY_DIR}/bin;TESTS=${CMAKE_BINARY_DIR}/tests;TOOLS=${CMAKE_CURRENT_SOURCE_DIR}/tools")
