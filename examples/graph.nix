# A small derivation graph that exercises what a build farm must get right:
# a fixed-output derivation, a derivation with several outputs, an input
# source, and dependents that need their inputs built first.
#
#   nix-instantiate examples/graph.nix -A app
#
# Every builder is /bin/sh with coreutils from the host, so the graph builds
# in a Nix sandbox that exposes /bin and /usr (extra-sandbox-paths).
{ system ? builtins.currentSystem, salt ? "" }:
let
  sh = "/bin/sh";
  path = "/usr/bin:/bin";
  mk = attrs: derivation ({ inherit system salt; builder = sh; PATH = path; } // attrs);

  # Fixed-output: the farm may build it anywhere; its path depends only on
  # the content hash.
  tarball = mk {
    name = "source-tarball";
    outputHashMode = "flat";
    outputHashAlgo = "sha256";
    outputHash = "d5bd0f8299940c4e0cab26a78b8c5101d2d1bab490d31fa61e4650fbe1378f36";
    args = [ "-c" "printf 'drvmesh fixed input\\n' > $out" ];
  };

  # Several outputs.
  lib = mk {
    name = "libgreet";
    outputs = [ "out" "dev" ];
    args = [ "-c" ''
      mkdir -p $out/lib $dev/include
      echo 'greet() { echo "hello from drvmesh"; }' > $out/lib/greet.sh
      echo "libdir=$out/lib" > $dev/include/greet.pc
    '' ];
  };

  tool = mk {
    name = "greet-tool";
    inherit lib;
    script = ./greet.sh;
    args = [ "-c" ''
      mkdir -p $out/bin
      { echo '#!/bin/sh'; echo ". $lib/lib/greet.sh"; cat $script; } > $out/bin/greet
      chmod +x $out/bin/greet
    '' ];
  };

  docs = mk {
    name = "greet-docs";
    src = tarball;
    dev = lib.dev;
    args = [ "-c" ''
      mkdir -p $out/share
      cat $src > $out/share/source.txt
      cat $dev/include/greet.pc >> $out/share/source.txt
    '' ];
  };

  app = mk {
    name = "greet-app";
    inherit tool docs;
    args = [ "-c" ''
      mkdir -p $out
      ln -s $tool/bin/greet $out/greet
      cat $docs/share/source.txt > $out/README
      echo built > $out/stamp
    '' ];
  };
in { inherit tarball lib tool docs app; }
