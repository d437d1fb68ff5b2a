%% EUnit tests running PropEr properties. PropEr is required (Debian:
%% apt-get install erlang-proper; CI installs it): without it these are
%% failing tests that say so, not a skip that passes. proper.hrl is not
%% needed (Debian ships it in erlang-proper-dev).
-module(consult_properties).

-include_lib("eunit/include/eunit.hrl").

-export([tests/4, needing_proper/1, missing/1]).

%% One test per property Module:Name(), each checked NumTests times.
-spec tests(module(), [atom()], pos_integer(), pos_integer()) -> term().
tests(Module, Names, NumTests, TimeoutSec) ->
    needing_proper(
      %% long_result: a failure shows the counterexample.
      [{atom_to_list(Name),
        {timeout, TimeoutSec,
         ?_assertEqual(true, proper:quickcheck(Module:Name(), [quiet, long_result, {numtests, NumTests}]))}}
       || Name <- Names]).

%% Tests that call PropEr themselves.
-spec needing_proper(term()) -> term().
needing_proper(Tests) ->
    case missing(proper) of
        false -> Tests;
        Failing -> Failing
    end.

%% false when Module can be loaded, else a failing test that says what to install.
-spec missing(module()) -> false | term().
missing(Module) ->
    case code:which(Module) of
        non_existing ->
            {"PropEr (" ++ atom_to_list(Module) ++ ") is not installed: apt-get install erlang-proper",
             ?_test(erlang:error({proper_not_installed, Module, "apt-get install erlang-proper"}))};
        _ ->
            false
    end.
