# The example_readme_in_sync test, run with cmake -P: README.md must contain
# examples/readme_example.cpp verbatim, so the example users read is the one
# that ctest compiles and runs.
file(READ ${README} readme)
file(READ ${EXAMPLE} example)
string(FIND "${readme}" "${example}" pos)
if(pos EQUAL -1)
  message(FATAL_ERROR "README.md's example differs from ${EXAMPLE}: copy the file into the README's code block")
endif()
