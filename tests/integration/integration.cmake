# Integration tests: shell scripts driving the real binaries on loopback.
function(ferry_integration_test name)
  add_test(NAME integration.${name}
    COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/integration/${name}.sh)
  set_tests_properties(integration.${name} PROPERTIES
    LABELS integration TIMEOUT 300
    ENVIRONMENT "BIN=${CMAKE_BINARY_DIR}/bin;TOOLS=${CMAKE_CURRENT_SOURCE_DIR}/tools")
endfunction()

ferry_integration_test(roundtrip)
