# ctest script for train_lm over MPI ranks, on a generated corpus:
#   - 2 ranks data parallel train as one process with the whole batch (float32:
#     the train losses agree to 1e-4 relative), rank 0 alone writing the files;
#   - resumed at the same world size, a run equals the uninterrupted one bit for bit;
#   - --ac-stats global trains, detached and differentiable;
#   - expert parallel (--expert-parallel), 2 ranks train as one process, write
#     the one-process model and resume bit for bit (with the experts' dropout);
#   - a bad option on one rank only ends both ranks with that rank's Error;
#   - a rank killed mid-training ends the run (mpirun's error handling), within
#     the test's time limit instead of a hang.
#
#   cmake -DTRAIN_LM=<bin> -DMPIEXEC=<mpirun> -DWORK_DIR=<scratch> -P train_lm_mpi.cmake
# (as root, mpirun needs OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 in the environment)
include(${CMAKE_CURRENT_LIST_DIR}/../cli_script.cmake)
set(RUN_TIMEOUT 120)
require_defined(train_lm_mpi TRAIN_LM MPIEXEC WORK_DIR)
file(REMOVE_RECURSE ${WORK_DIR})
file(MAKE_DIRECTORY ${WORK_DIR}/data)
write_tiny_corpus(${WORK_DIR}/data 7)

# The train loss of each step in a metrics file, as a list.
function(train_losses metrics out_var)
  file(STRINGS ${metrics} lines)
  set(losses "")
  foreach(line IN LISTS lines)
    string(JSON type GET "${line}" type)
    if(type STREQUAL "train")
      string(JSON loss GET "${line}" loss)
      list(APPEND losses ${loss})
    endif()
  endforeach()
  set(${out_var} ${losses} PARENT_SCOPE)
endfunction()

# Fails unless the losses in lists a and b (of n steps) agree to 1e-4 relative.
function(expect_same_losses a_var b_var n what)
  math(EXPR last "${n} - 1")
  foreach(i RANGE ${last})
    list(GET ${a_var} ${i} a)
    list(GET ${b_var} ${i} b)
    math(EXPR step "${i} + 1")
    # |a - b| <= 1e-4 |a|, in integers of 1e-9 (CMake's math has no floats)
    foreach(v a b)
      string(REGEX MATCH "^([0-9]+)\\.?([0-9]*)" _ "${${v}}")
      set(frac "${CMAKE_MATCH_2}000000000")
      string(SUBSTRING "${frac}" 0 9 frac)
      math(EXPR ${v}_nano "${CMAKE_MATCH_1} * 1000000000 + 1${frac} - 1000000000")
    endforeach()
    math(EXPR diff "${a_nano} - ${b_nano}")
    if(diff LESS 0)
      math(EXPR diff "-${diff}")
    endif()
    math(EXPR limit "${a_nano} / 10000")
    if(diff GREATER limit)
      message(FATAL_ERROR "step ${step}: one process loss ${a}, ${what} ${b}")
    endif()
  endforeach()
endfunction()

# Fails unless a run of 3 steps resumed to 6 equals 6 steps straight: the
# losses of every step and the last checkpoint's bytes and metadata (except
# the config, which names its own --out and --resume).
function(expect_exact_resume name)
  run(TRUE ${np} ${TRAIN_LM} ${model} ${ARGN} --steps 6 --out ${WORK_DIR}/${name}-whole)
  run(TRUE ${np} ${TRAIN_LM} ${model} ${ARGN} --steps 3 --out ${WORK_DIR}/${name}-resumed)
  run(TRUE ${np} ${TRAIN_LM} ${model} ${ARGN} --steps 6 --out ${WORK_DIR}/${name}-resumed --resume)
  train_losses(${WORK_DIR}/${name}-whole/metrics.jsonl whole_losses)
  train_losses(${WORK_DIR}/${name}-resumed/metrics.jsonl resumed_losses)
  list(LENGTH whole_losses n)
  if(NOT n EQUAL 6 OR NOT whole_losses STREQUAL resumed_losses)
    message(FATAL_ERROR "${name}: the resumed run's losses ${resumed_losses} differ from the uninterrupted ${whole_losses}")
  endif()
  foreach(run whole resumed)
    set(ckpt ${WORK_DIR}/${name}-${run}/checkpoint.safetensors)
    read_header(${ckpt} header)
    string(JSON meta GET "${header}" __metadata__)
    string(JSON ${run}_meta REMOVE "${meta}" config)
    file(READ ${ckpt} ${run}_data OFFSET ${header_data_start} HEX)
  endforeach()
  if(NOT whole_meta STREQUAL resumed_meta OR NOT whole_data STREQUAL resumed_data)
    message(FATAL_ERROR "${name}: the resumed run's last checkpoint (tensors, step, generator state) differs from "
                        "the uninterrupted run's:\n${resumed_meta}\n${whole_meta}")
  endif()
endfunction()

set(model --data ${WORK_DIR}/data --router smoe --arch sgsg --dim 16 --heads 2 --experts 4 --expert-hidden 16 --seq-len 16
    --batch 4 --warmup 2 --eval-every 0 --eval-batches 1 --threads 1 --log-every 1 --balance-coef 0)
set(np ${MPIEXEC} -n 2 --oversubscribe)

# data parallel equals one process
run(TRUE ${TRAIN_LM} ${model} --steps 4 --out ${WORK_DIR}/single)
run(TRUE ${np} ${TRAIN_LM} ${model} --steps 4 --out ${WORK_DIR}/two)
expect_in("${err}" "data parallel over 2 ranks of 2 sequences")
train_losses(${WORK_DIR}/single/metrics.jsonl single)
train_losses(${WORK_DIR}/two/metrics.jsonl two)
list(LENGTH single n)
list(LENGTH two n_two)
if(NOT n EQUAL 4 OR NOT n_two EQUAL 4)
  message(FATAL_ERROR "expected 4 train records, got ${n} (one process) and ${n_two} (2 ranks)")
endif()
expect_same_losses(single two 4 "2 ranks")
if(NOT EXISTS ${WORK_DIR}/two/checkpoint.safetensors)
  message(FATAL_ERROR "rank 0 wrote no checkpoint")
endif()

# resumed at the same world size, the run continues exactly
expect_exact_resume(data-parallel)

# the AC statistics of the global batch
run(TRUE ${np} ${TRAIN_LM} ${model} --arch sgsc --router acmoe --ac-stats global --steps 2 --out ${WORK_DIR}/global)
run(TRUE ${np} ${TRAIN_LM} ${model} --arch sgsc --router acmoe --ac-stats global --ac-differentiable --steps 2
    --out ${WORK_DIR}/global-differentiable)

# expert parallel: each rank holds 2 of every MoE layer's 4 experts; the run
# equals one process, its checkpoint holds the one-process model (all 4
# experts), and it resumes exactly with the experts' dropout on (every
# rank's generators are in the checkpoint), only at the world size it was
# written with
run(TRUE ${np} ${TRAIN_LM} ${model} --expert-parallel --steps 4 --out ${WORK_DIR}/experts)
expect_in("${err}" "each with 2 of every MoE layer's 4 experts")
train_losses(${WORK_DIR}/experts/metrics.jsonl experts)
expect_same_losses(single experts 4 "2 expert-parallel ranks")
read_header(${WORK_DIR}/experts/checkpoint.safetensors header)
foreach(tensor model.layers.1.moe.experts.w1 optim.layers.3.moe.experts.b2.v)
  string(JSON rows GET "${header}" ${tensor} shape 0)
  if(NOT rows EQUAL 4)
    message(FATAL_ERROR "the expert-parallel checkpoint's ${tensor} has ${rows} experts' rows, not 4")
  endif()
endforeach()
expect_exact_resume(expert-parallel --expert-parallel --dropout 0.2 --dropout-layout official)
run(FALSE ${MPIEXEC} -n 4 --oversubscribe ${TRAIN_LM} ${model} --expert-parallel --dropout 0.2 --dropout-layout official
    --steps 8 --out ${WORK_DIR}/expert-parallel-whole --resume)
expect_in("${err}" "was written by 2 expert-parallel rank(s); resume it with as many, not 4")
run(FALSE ${np} ${TRAIN_LM} ${model} --expert-parallel --experts 3 --steps 2 --out ${WORK_DIR}/three)
expect_in("${err}" "3 experts cannot be split evenly over 2 ranks")

# a bad option on rank 1 only: both ranks end with its Error
run(FALSE ${MPIEXEC} --oversubscribe -n 1 ${TRAIN_LM} ${model} --steps 2 --out ${WORK_DIR}/bad :
    -n 1 ${TRAIN_LM} ${model} --steps 2 --out ${WORK_DIR}/bad --ac-stats everywhere)
string(REGEX MATCHALL "error: rank 1: train_lm: --ac-stats must be local \\| global" said "${err}")
list(LENGTH said ranks_said)
if(NOT ranks_said EQUAL 2)
  message(FATAL_ERROR "expected rank 1's Error from both ranks, got:\n${err}")
endif()

# rank 1 killed while training: the run ends (not a hang) with a failure
string(REPLACE ";" " " model_line "${model}")
file(REMOVE_RECURSE ${WORK_DIR}/killed)
string(TIMESTAMP start "%s")
run(FALSE ${MPIEXEC} --oversubscribe -n 1 ${TRAIN_LM} ${model} --steps 100000 --out ${WORK_DIR}/killed :
    -n 1 sh -c "${TRAIN_LM} ${model_line} --steps 100000 --out ${WORK_DIR}/killed & sleep 5; kill -9 $!; wait")
string(TIMESTAMP end "%s")
math(EXPR seconds "${end} - ${start}")
if(seconds GREATER 60)
  message(FATAL_ERROR "the run went on ${seconds} s after a rank was killed")
endif()
# ... and it was training when the kill came (not failing at start-up)
set(records "")
if(EXISTS ${WORK_DIR}/killed/metrics.jsonl)
  file(READ ${WORK_DIR}/killed/metrics.jsonl records)
endif()
if(NOT records MATCHES "\"type\":\"train\"")
  message(FATAL_ERROR "the killed run never trained (no train record), so the kill was not tested:\n${err}")
endif()
