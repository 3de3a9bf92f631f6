# n small derivations in layers of ten: each one depends on up to three of
# the layer below, and a root depends on the top layer. For the overhead
# benchmark: the build work is trivial, so what is measured is the farm.
#
#   nix-instantiate examples/many.nix --arg n 200 -A root
{ n ? 200, system ? builtins.currentSystem, salt ? "" }:
let
  sh = "/bin/sh";
  mk = name: deps: derivation {
    inherit name system salt;
    builder = sh;
    PATH = "/usr/bin:/bin";
    deps = deps;
    # Each output names its inputs (so it refers to them) but does not
    # copy them: copying would triple the size at every layer.
    args = [ "-c" "echo ${name} > $out; for d in $deps; do echo $d >> $out; done" ];
  };
  layer = i: i / 10;
  node = i: mk "leaf-${toString i}" (
    if layer i == 0 then [ ]
    else map (j: nodes.${toString ((layer i - 1) * 10 + j)}) (builtins.genList (k: (i + k) - (i / 10) * 10 - (if (i + k) - (i / 10) * 10 >= 10 then 10 else 0)) 3));
  nodes = builtins.listToAttrs (builtins.genList (i: { name = toString i; value = node i; }) (n - 1));
  top = builtins.genList (j: nodes.${toString ((layer (n - 2)) * 10 + j)}) (n - 1 - (layer (n - 2)) * 10);
in { root = mk "many-root" top; }
