# ctest script for the language-model programs end to end: train_lm trains a
# tiny model on a generated corpus, evaluate_lm scores its checkpoint by batch
# and causally (the table and the JSON record), generate continues a prompt
# (the same seed gives the same text, greedy decoding another), --help lists
# every flag, and bad command lines exit non-zero with a message naming the
# problem.
#
#   cmake -DTRAIN_LM=<bin> -DEVALUATE_LM=<bin> -DGENERATE=<bin> -DWORK_DIR=<scratch> -P lm_programs_cli.cmake
include(${CMAKE_CURRENT_LIST_DIR}/../cli_script.cmake)
require_defined(lm_programs_cli TRAIN_LM EVALUATE_LM GENERATE WORK_DIR)
file(REMOVE_RECURSE ${WORK_DIR})
file(MAKE_DIRECTORY ${WORK_DIR}/data)
write_tiny_corpus(${WORK_DIR}/data 5)

# --help lists every flag, --recipe (read before the others) among them
run(TRUE ${TRAIN_LM} --help)
foreach(flag "--recipe S" "--level S" "--steps N" "--head-bias / --no-head-bias")
  expect_in("${out}" "${flag}")
endforeach()

set(ckpt ${WORK_DIR}/run/checkpoint.safetensors)
run(TRUE ${TRAIN_LM} --data ${WORK_DIR}/data --out ${WORK_DIR}/run --arch sgsc --dim 16 --heads 2 --experts 4
    --expert-hidden 16 --seq-len 16 --batch 4 --steps 4 --warmup 2 --eval-every 0 --threads 1 --eval both)
expect_in("${out}" "valid_causal")

run(TRUE ${EVALUATE_LM} --checkpoint ${ckpt} --eval both --threads 1 --out ${WORK_DIR}/eval.jsonl)
foreach(name "valid " "test_attacked " "valid_causal " "test_attacked_causal ")
  expect_in("${out}" "${name}")
endforeach()
file(READ ${WORK_DIR}/eval.jsonl record)
expect_in("${record}" "\"valid_causal\"")
run(TRUE ${EVALUATE_LM} --checkpoint ${ckpt} --eval batch --batch 2 --data ${WORK_DIR}/data --threads 1)
foreach(name "valid " "test_attacked ")
  expect_in("${out}" "${name}")
endforeach()
if(out MATCHES "_causal")
  message(FATAL_ERROR "--eval batch printed a causal evaluation:\n${out}")
endif()
run(FALSE ${EVALUATE_LM} --eval batch)
expect_in("${err}" "--checkpoint is required")
run(FALSE ${EVALUATE_LM} --checkpoint ${WORK_DIR}/missing.safetensors)
expect_in("${err}" "missing.safetensors")
run(FALSE ${EVALUATE_LM} --checkpoint ${ckpt} --eval sideways)
expect_in("${err}" "--eval must be batch | causal | both")

# generate: the prompt, then exactly --tokens bytes (counted in a file: a
# sampled byte may be NUL, which a CMake string cannot hold) and a newline;
# the same seed gives the same text, another seed other text; greedy decoding
# is the same every time and differs from sampling
set(sample_flags --checkpoint ${ckpt} --prompt "in the" --tokens 40 --temperature 0.9 --top-k 20 --top-p 0.95)
execute_process(COMMAND ${GENERATE} ${sample_flags} --seed 3 OUTPUT_FILE ${WORK_DIR}/sampled.txt RESULT_VARIABLE rc)
file(SIZE ${WORK_DIR}/sampled.txt bytes)
if(NOT rc EQUAL 0 OR NOT bytes EQUAL 47)
  message(FATAL_ERROR "generate --tokens 40 after a 6-byte prompt: status ${rc}, ${bytes} bytes instead of 47")
endif()
run(TRUE ${GENERATE} ${sample_flags} --seed 3)
set(first "${out}")
string(FIND "${first}" "in the" at)
if(NOT at EQUAL 0)
  message(FATAL_ERROR "the generated text does not start with the prompt:\n${first}")
endif()
run(TRUE ${GENERATE} ${sample_flags} --seed 3)
if(NOT out STREQUAL first)
  message(FATAL_ERROR "the same seed gave different text:\n${first}\n${out}")
endif()
run(TRUE ${GENERATE} ${sample_flags} --seed 4)
if(out STREQUAL first)
  message(FATAL_ERROR "seeds 3 and 4 gave the same text:\n${out}")
endif()
run(TRUE ${GENERATE} --checkpoint ${ckpt} --prompt "in the" --tokens 40 --temperature 0)
set(greedy "${out}")
run(TRUE ${GENERATE} --checkpoint ${ckpt} --prompt "in the" --tokens 40 --temperature 0 --seed 9)
if(NOT out STREQUAL greedy OR greedy STREQUAL first)
  message(FATAL_ERROR "greedy decoding should repeat itself whatever the seed and differ from sampling:\n"
                      "${greedy}\n${out}\n${first}")
endif()
run(TRUE ${GENERATE} --checkpoint ${ckpt} --prompt-file ${WORK_DIR}/data/valid.txt --tokens 30 --temperature 0)
run(FALSE ${GENERATE} --checkpoint ${ckpt} --top-p 0)
expect_in("${err}" "--top-p must be in (0, 1]")
run(FALSE ${GENERATE} --checkpoint ${ckpt} --prompt a --prompt-file b)
expect_in("${err}" "not both")
message(STATUS "lm_programs_cli: all checks passed")
