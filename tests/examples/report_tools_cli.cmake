# ctest script for the experiment's report tools on real (tiny) train_lm runs:
# two seeds of an smoe and an acmoe arm, then tools/seed_summary.py (the
# tables, the paired differences' mean and spread, the AC layer's
# diagnostics with the weights' spread) and
# tools/plot_curves.py (a PNG written whole; an unwritable destination or a write limit is a
# message and exit status 1, the previous plot intact, nothing left behind).
#
#   cmake -DTRAIN_LM=<bin> -DPYTHON=<python3 with matplotlib> -DTOOLS_DIR=<tools/> -DWORK_DIR=<scratch>
#         -P report_tools_cli.cmake
include(${CMAKE_CURRENT_LIST_DIR}/../cli_script.cmake)
require_defined(report_tools_cli TRAIN_LM PYTHON TOOLS_DIR WORK_DIR)
file(REMOVE_RECURSE ${WORK_DIR})
file(MAKE_DIRECTORY ${WORK_DIR}/data)
write_tiny_corpus(${WORK_DIR}/data 5)

foreach(seed 0 1)
  foreach(arm smoe acmoe)
    run(TRUE ${TRAIN_LM} --data ${WORK_DIR}/data --out ${WORK_DIR}/s${seed}/${arm} --arch sgsc --router ${arm}
        --dim 16 --heads 2 --experts 4 --expert-hidden 16 --seq-len 16 --batch 4 --steps 6 --warmup 2
        --log-every 1 --eval-every 3 --eval-batches 2 --seed ${seed} --threads 1)
  endforeach()
endforeach()

run(TRUE ${PYTHON} ${TOOLS_DIR}/seed_summary.py ${WORK_DIR}/s0 ${WORK_DIR}/s1)
foreach(needle "2 seeds" "| smoe |" "| acmoe |" "s1 acmoe:" "AC weights' spread, first tenth" "| acmoe | 3 |")
  expect_in("${out}" "${needle}")
endforeach()
# the paired differences' row is the mean of the per-seed differences printed above it
file(WRITE ${WORK_DIR}/summary.txt "${out}")
execute_process(COMMAND ${PYTHON} -c [=[
import re, statistics, sys
text = open(sys.argv[1]).read()
seeds = [[float(v) for v in m.split()] for m in re.findall(r"^    s\d acmoe: (\S+ \S+ \S+ \S+);", text, re.M)]
row = re.search(r"^\| acmoe − smoe \| (.*) \|$", text, re.M)
assert len(seeds) == 2 and row, "no per-seed lines or no paired row"
cells = [c.split(" ± ") for c in row.group(1).split(" | ")]
for col, (mean, sd) in enumerate(cells):
    diffs = [s[col] for s in seeds]
    assert abs(float(mean) - statistics.mean(diffs)) < 2e-4 and abs(float(sd) - statistics.stdev(diffs)) < 2e-4, (col, cells, diffs)
]=] ${WORK_DIR}/summary.txt RESULT_VARIABLE rc ERROR_VARIABLE check_err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "seed_summary.py: the paired differences' row does not match the per-seed lines:\n${check_err}")
endif()

set(png ${WORK_DIR}/curves.png)
run(TRUE ${PYTHON} ${TOOLS_DIR}/plot_curves.py ${png} ${WORK_DIR}/s0/smoe ${WORK_DIR}/s0/acmoe)
file(READ ${png} magic LIMIT 4 HEX)
if(NOT magic STREQUAL "89504e47")
  message(FATAL_ERROR "plot_curves.py: ${png} is not a PNG (starts with ${magic})")
endif()
file(SIZE ${png} before)

# a destination folder that does not exist: a message, status 1
run(FALSE ${PYTHON} ${TOOLS_DIR}/plot_curves.py ${WORK_DIR}/missing/curves.png ${WORK_DIR}/s0/acmoe)
expect_in("${err}" "cannot write")
# a write limit of 8 KiB (as a full disk): a message, status 1, the previous plot
# as it was and no temporary file left
run(FALSE sh -c "ulimit -f 8 && exec \"$0\" \"$@\"" ${PYTHON} ${TOOLS_DIR}/plot_curves.py ${png}
    ${WORK_DIR}/s1/smoe ${WORK_DIR}/s1/acmoe)
expect_in("${err}" "cannot write")
file(SIZE ${png} after)
file(GLOB leftovers ${WORK_DIR}/.plot_curves.*)
if(NOT before EQUAL after OR leftovers)
  message(FATAL_ERROR "plot_curves.py: a failed write changed ${png} (${before} -> ${after} bytes) or left ${leftovers}")
endif()
