# The package_consumer test, run with cmake -P: installs the moegrad build in
# MOEGRAD_BUILD_DIR into WORK_DIR/prefix, then configures, builds and runs the
# consumer project in CONSUMER_SOURCE_DIR against that prefix. Eigen is hidden
# from the consumer's configure to prove it is not a public dependency.
foreach(var MOEGRAD_BUILD_DIR CONSUMER_SOURCE_DIR WORK_DIR CXX_COMPILER)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "run.cmake: pass -D${var}=...")
  endif()
endforeach()

function(step what)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "package_consumer: ${what} failed (${rc}):\n${out}\n${err}")
  endif()
  message(STATUS "package_consumer: ${what}: ok")
endfunction()

file(REMOVE_RECURSE ${WORK_DIR})
step("install" ${CMAKE_COMMAND} --install ${MOEGRAD_BUILD_DIR} --prefix ${WORK_DIR}/prefix)

file(GLOB_RECURSE headers ${WORK_DIR}/prefix/include/*.h)
foreach(h ${headers})
  file(STRINGS ${h} eigen_includes REGEX "#include *[<\"]Eigen")
  if(eigen_includes)
    message(FATAL_ERROR "package_consumer: installed header ${h} includes Eigen")
  endif()
endforeach()

step("configure" ${CMAKE_COMMAND} -S ${CONSUMER_SOURCE_DIR} -B ${WORK_DIR}/build
     -DCMAKE_PREFIX_PATH=${WORK_DIR}/prefix -DCMAKE_CXX_COMPILER=${CXX_COMPILER}
     -DCMAKE_DISABLE_FIND_PACKAGE_Eigen3=ON)
step("build" ${CMAKE_COMMAND} --build ${WORK_DIR}/build)
step("run" ${WORK_DIR}/build/consumer)
