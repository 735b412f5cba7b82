# ctest script for the examples/run_layer program: the command-line round trip.
# Runs run_layer on the committed fixture in tests/fixtures/run_layer/ (a
# float64 Linear layer with integer-valued data, written by PyTorch with
# make_fixture.py, so every result is exact) and checks that the file it writes
# holds exactly the tensors of PyTorch's expected.safetensors, with equal
# dtypes, shapes and bytes. Then checks that a bad command line, config or
# input exits non-zero, names the problem on stderr and writes no file.
#
#   cmake -DRUN_LAYER=<run_layer binary> -DFIXTURE_DIR=<tests/fixtures/run_layer>
#         -DWORK_DIR=<scratch folder> -P run_layer_cli.cmake
include(${CMAKE_CURRENT_LIST_DIR}/../cli_script.cmake)
require_defined(run_layer_cli RUN_LAYER FIXTURE_DIR WORK_DIR)
file(REMOVE_RECURSE ${WORK_DIR})
file(MAKE_DIRECTORY ${WORK_DIR})

# The tensor names in a header (without __metadata__).
function(tensor_names header out)
  set(names "")
  string(JSON count LENGTH "${header}")
  math(EXPR last "${count} - 1")
  foreach(i RANGE ${last})
    string(JSON name MEMBER "${header}" ${i})
    if(NOT name STREQUAL "__metadata__")
      list(APPEND names ${name})
    endif()
  endforeach()
  list(SORT names)
  set(${out} ${names} PARENT_SCOPE)
endfunction()

# The bytes of tensor `name` as hex.
function(tensor_hex path header data_start name out)
  string(JSON begin GET "${header}" ${name} data_offsets 0)
  string(JSON end GET "${header}" ${name} data_offsets 1)
  math(EXPR offset "${data_start} + ${begin}")
  math(EXPR size "${end} - ${begin}")
  file(READ ${path} hex OFFSET ${offset} LIMIT ${size} HEX)
  set(${out} ${hex} PARENT_SCOPE)
endfunction()

# ---- the round trip ----
set(out ${WORK_DIR}/outputs.safetensors)
execute_process(COMMAND ${RUN_LAYER} ${FIXTURE_DIR}/config.json ${FIXTURE_DIR}/inputs.safetensors ${out}
  RESULT_VARIABLE rc OUTPUT_VARIABLE stdout ERROR_VARIABLE stderr)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "run_layer failed (${rc}):\n${stdout}${stderr}")
endif()
if(NOT stdout MATCHES "^run_layer: linear \\(float64\\): read 4 tensors, wrote 1 outputs and 3 gradients to ")
  message(FATAL_ERROR "unexpected summary line: ${stdout}")
endif()

read_header(${FIXTURE_DIR}/expected.safetensors want)
read_header(${out} got)
tensor_names("${want}" want_names)
tensor_names("${got}" got_names)
if(NOT want_names STREQUAL got_names)
  message(FATAL_ERROR "run_layer wrote tensors [${got_names}], PyTorch's reference has [${want_names}]")
endif()
foreach(name ${want_names})
  foreach(field dtype shape)
    string(JSON a GET "${want}" ${name} ${field})
    string(JSON b GET "${got}" ${name} ${field})
    if(NOT a STREQUAL b)  # GET returns strings as text, arrays re-written by CMake: comparable
      message(FATAL_ERROR "${name}: ${field} ${b}, PyTorch's reference has ${a}")
    endif()
  endforeach()
  tensor_hex(${FIXTURE_DIR}/expected.safetensors "${want}" ${want_data_start} ${name} a)
  tensor_hex(${out} "${got}" ${got_data_start} ${name} b)
  if(NOT a STREQUAL b)
    message(FATAL_ERROR "${name}: run_layer wrote bytes ${b}, PyTorch's reference has ${a}")
  endif()
endforeach()
list(LENGTH want_names n)
message(STATUS "run_layer round trip: ${n} tensors equal PyTorch's byte for byte")

# ---- failures: non-zero exit, the problem named on stderr, no file written ----
file(READ ${FIXTURE_DIR}/config.json good_config)
string(REPLACE "\"dtype\"" "\"dtyp\"" typo_config "${good_config}")
string(REPLACE "\"in_features\": 4" "\"in_features\": 5" shape_config "${good_config}")
file(WRITE ${WORK_DIR}/typo.json "${typo_config}")
file(WRITE ${WORK_DIR}/shape.json "${shape_config}")
file(WRITE ${WORK_DIR}/broken.json "{\"layer\": ")

function(expect_failure expected_stderr)
  file(REMOVE ${WORK_DIR}/bad.safetensors)
  execute_process(COMMAND ${RUN_LAYER} ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE stdout ERROR_VARIABLE stderr)
  string(FIND "${stderr}" "${expected_stderr}" at)
  if(rc EQUAL 0 OR at EQUAL -1)
    message(FATAL_ERROR "run_layer ${ARGN}: expected a failure naming '${expected_stderr}', got exit ${rc}, "
                        "stdout '${stdout}', stderr '${stderr}'")
  endif()
  if(EXISTS ${WORK_DIR}/bad.safetensors)
    message(FATAL_ERROR "run_layer ${ARGN} failed but wrote its output file")
  endif()
endfunction()

set(in ${FIXTURE_DIR}/inputs.safetensors)
set(bad ${WORK_DIR}/bad.safetensors)
expect_failure("usage: run_layer CONFIG.json INPUTS.safetensors OUTPUTS.safetensors")
expect_failure("usage: run_layer" ${FIXTURE_DIR}/config.json ${in})
expect_failure("config key \"dtyp\" is unknown" ${WORK_DIR}/typo.json ${in} ${bad})
expect_failure("is not valid JSON" ${WORK_DIR}/broken.json ${in} ${bad})
expect_failure("cannot open config '${WORK_DIR}/missing.json'" ${WORK_DIR}/missing.json ${in} ${bad})
expect_failure("${WORK_DIR}/missing.safetensors" ${FIXTURE_DIR}/config.json ${WORK_DIR}/missing.safetensors ${bad})
expect_failure("tensor \"param.weight\" must have shape [3, 5], got [3, 4]" ${WORK_DIR}/shape.json ${in} ${bad})
expect_failure("save_safetensors: cannot write '${WORK_DIR}/no_such_dir/out.safetensors'" ${FIXTURE_DIR}/config.json ${in}
               ${WORK_DIR}/no_such_dir/out.safetensors)
message(STATUS "run_layer failures: exit codes, messages and no output files as expected")
