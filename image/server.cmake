# ferry-repo: the repository's command line and server.
add_executable(ferry-repo image/ferry_repo.c image/repo_server.c)
target_link_libraries(ferry-repo PRIVATE ferry_image ferry_proto)
