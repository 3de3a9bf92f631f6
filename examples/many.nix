# n small derivations in layers of `width`: each one depends on up to three
# of the layer below, and a root depends on the top layer. For the overhead
# benchmark: the build work is trivial, so what is measured is the farm.
# width = 1 makes a chain, where only one build can run at a time.
#
#   nix-instantiate examples/many.nix --arg n 200 -A root
{ n ? 200, width ? 10, system ? builtins.currentSystem, salt ? "" }:
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
  mod = a: b: a - (a / b) * b;
  layer = i: i / width;
  fanIn = if width < 3 then width else 3;
  node = i: mk "leaf-${toString i}" (
    if layer i == 0 then [ ]
    else map (k: nodes.${toString ((layer i - 1) * width + mod (i + k) width)}) (builtins.genList (k: k) fanIn));
  nodes = builtins.listToAttrs (builtins.genList (i: { name = toString i; value = node i; }) (n - 1));
  top = builtins.genList (j: nodes.${toString ((layer (n - 2)) * width + j)}) (n - 1 - (layer (n - 2)) * width);
in { root = mk "many-root" top; }
