# metalm_find_python(): the Python that runs scripts/plots/plot.py and
# scripts/experiments/report.py in the tests needs numpy and matplotlib. The first python3
# on PATH may lack them (a pyenv or virtualenv interpreter), so every python3
# on PATH, then the system's, is tried until one imports both; that one is
# handed to FindPython3. -DPython3_EXECUTABLE=... overrides the search.
# Sets Python3_EXECUTABLE (cached) and METALM_PYTHON_FOUND.
function(metalm_find_python)
  if(NOT Python3_EXECUTABLE)
    string(REPLACE ":" ";" path_dirs "$ENV{PATH}")
    foreach(dir IN LISTS path_dirs ITEMS /usr/bin /usr/local/bin)
      set(candidate "${dir}/python3")
      if(NOT dir OR NOT EXISTS "${candidate}" OR IS_DIRECTORY "${candidate}")
        continue()
      endif()
      execute_process(COMMAND "${candidate}" -c "import numpy, matplotlib"
        RESULT_VARIABLE rc OUTPUT_QUIET ERROR_QUIET)
      if(rc EQUAL 0)
        set(Python3_EXECUTABLE "${candidate}" CACHE FILEPATH "Python with numpy and matplotlib for the tests")
        break()
      endif()
    endforeach()
  endif()
  find_package(Python3 COMPONENTS Interpreter)
  set(METALM_PYTHON_FOUND FALSE PARENT_SCOPE)
  if(Python3_Interpreter_FOUND)
    execute_process(COMMAND "${Python3_EXECUTABLE}" -c "import numpy, matplotlib"
      RESULT_VARIABLE rc OUTPUT_QUIET ERROR_QUIET)
    if(rc EQUAL 0)
      set(METALM_PYTHON_FOUND TRUE PARENT_SCOPE)
      return()
    endif()
  endif()
  message(WARNING "No python3 with numpy and matplotlib (Python3_EXECUTABLE='${Python3_EXECUTABLE}'; "
                  "searched PATH, /usr/bin, /usr/local/bin): the Python tests of scripts/ are not registered; "
                  "install python3-numpy and python3-matplotlib or set -DPython3_EXECUTABLE=...")
endfunction()
