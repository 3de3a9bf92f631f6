# Derivations for the node build tests: one that fails, one that sleeps,
# a two-step chain whose dependent is submitted without its input, and a
# dependent of a failing input.
# salt makes every test run's paths new, so no store holds them already.
#
#   nix-instantiate node/testdata/builds.nix -A fail --argstr salt X
{ system ? builtins.currentSystem, salt ? "", seconds ? "600" }:
let
  mk = attrs: derivation ({ inherit system salt; builder = "/bin/sh"; PATH = "/usr/bin:/bin"; } // attrs);
in rec {
  # Prints a marker the tests look for in the build log, then fails.
  fail = mk {
    name = "always-fails";
    args = [ "-c" "echo \"drvmesh-test-failure-$salt\" >&2; exit 1" ];
  };

  # Sleeps for about `seconds`; the shell that loops carries a marker on
  # its command line that the tests look for among the machine's processes.
  sleeper = mk {
    name = "sleeper";
    args = [ "-c" "i=0; while [ $i -lt ${seconds} ]; do sleep 1; i=$((i+1)); done; echo slept > $out # drvmesh-sleep-${salt}" ];
  };

  input = mk {
    name = "chain-input";
    args = [ "-c" "echo input-$salt > $out" ];
  };

  dependent = mk {
    name = "chain-dependent";
    inherit input;
    args = [ "-c" "cat $input > $out; echo dependent >> $out" ];
  };

  brokenInput = mk {
    name = "broken-input";
    args = [ "-c" "echo broken-$salt >&2; exit 1" ];
  };

  afterBroken = mk {
    name = "after-broken";
    inherit brokenInput;
    args = [ "-c" "cat $brokenInput > $out" ];
  };
}
