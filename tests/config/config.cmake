# Configuration and logging (label "config"): the packaged agent.conf
# documents every key this build knows; ferry-agent's messages for a bad
# file name its line, the range, the unknown key; tmpDirectory log files;
# no credential in any log at the most verbose level. Included by
# tests/CMakeLists.txt, so paths are relative to tests/.
add_executable(test_packaged_config config/test_packaged_config.c)
target_link_libraries(test_packaged_config PRIVATE ferry_agent)
set_target_properties(test_packaged_config PROPERTIES
  RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)
add_test(NAME config.packaged_keys
  COMMAND test_packaged_config ${CMAKE_SOURCE_DIR}/packaging/agent.conf)
set_tests_properties(config.packaged_keys PROPERTIES
  LABELS "config;unit" TIMEOUT 60)

set(FY_CONFIG_ENV
  "BIN=${CMAKE_BINARY_DIR}/bin;TOOLS=${CMAKE_CURRENT_SOURCE_DIR}/tools;SRC=${CMAKE_SOURCE_DIR}")
add_test(NAME config.errors
  COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/config/errors.sh)
add_test(NAME config.logging
  COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/config/logging.sh)
add_test(NAME config.help
  COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/config/help.sh)
set_tests_properties(config.errors config.logging config.help PROPERTIES
  LABELS "config;integration" TIMEOUT 180 SKIP_RETURN_CODE 77
  ENVIRONMENT "${FY_CONFIG_ENV}")
