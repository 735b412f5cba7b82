# What the ctest scripts that drive moegrad's programs share (included by
# tests/examples/*.cmake and tests/dist/*.cmake, run with cmake -P):
#   require_defined(script VAR...)   a FATAL_ERROR naming each -DVAR=... not given
#   write_tiny_corpus(dir modulus)   train/valid/test.txt of 81 short verses in dir
#   run(expect_ok COMMAND...)        runs it (at most RUN_TIMEOUT seconds, 600 unless
#                                    set), fails the script when its exit status
#                                    disagrees with expect_ok; out and err hold its output
#   expect_in(haystack needle)       a FATAL_ERROR unless needle is in haystack
#   read_header(path out)            a safetensors file's JSON header in out, where
#                                    its data starts in out_data_start
cmake_minimum_required(VERSION 3.20)

function(require_defined script)
  foreach(var ${ARGN})
    if(NOT DEFINED ${var})
      message(FATAL_ERROR "${script}: -D${var}=... is required")
    endif()
  endforeach()
endfunction()

function(write_tiny_corpus dir modulus)
  set(text "")
  foreach(i RANGE 80)
    math(EXPR m "${i} % ${modulus}")
    string(APPEND text "in the beginning god created the heaven and the earth ${m} .\n")
  endforeach()
  foreach(split train valid test)
    file(WRITE ${dir}/${split}.txt "${text}")
  endforeach()
endfunction()

if(NOT DEFINED RUN_TIMEOUT)
  set(RUN_TIMEOUT 600)
endif()

function(run expect_ok)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err TIMEOUT ${RUN_TIMEOUT})
  if(expect_ok AND NOT rc EQUAL 0)
    message(FATAL_ERROR "failed (${rc}): ${ARGN}\n${out}\n${err}")
  elseif(NOT expect_ok AND rc EQUAL 0)
    message(FATAL_ERROR "should have failed: ${ARGN}\n${out}")
  endif()
  set(out "${out}" PARENT_SCOPE)
  set(err "${err}" PARENT_SCOPE)
endfunction()

function(expect_in haystack needle)
  string(FIND "${haystack}" "${needle}" at)
  if(at EQUAL -1)
    message(FATAL_ERROR "expected '${needle}' in:\n${haystack}")
  endif()
endfunction()

# The JSON header of a safetensors file (8 bytes little-endian length, then the header).
function(read_header path out)
  file(READ ${path} len LIMIT 8 HEX)
  string(SUBSTRING ${len} 0 8 low)  # the header length fits in the low 4 bytes
  string(REGEX REPLACE "(..)(..)(..)(..)" "\\4\\3\\2\\1" low ${low})
  math(EXPR n "0x${low}")
  file(READ ${path} header OFFSET 8 LIMIT ${n})
  set(${out} "${header}" PARENT_SCOPE)
  math(EXPR start "8 + ${n}")
  set(${out}_data_start ${start} PARENT_SCOPE)
endfunction()
