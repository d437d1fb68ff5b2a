%% EUnit tests running a module's PropEr properties, or one note that they
%% were skipped when PropEr is not installed (Debian: erlang-proper). Used by
%% the *_tests modules; proper.hrl is not needed (erlang-proper-dev).
-module(consult_properties).

-include_lib("eunit/include/eunit.hrl").

-export([tests/4]).

-spec tests(module(), [atom()], pos_integer(), pos_integer()) -> term().
tests(Module, Names, NumTests, TimeoutSec) ->
    case code:which(proper) of
        non_existing ->
            {"PropEr not installed (apt-get install erlang-proper): properties skipped",
             fun() -> ok end};
        _ ->
            %% long_result: a failure shows the counterexample.
            [{atom_to_list(Name),
              {timeout, TimeoutSec,
               ?_assertEqual(true, proper:quickcheck(Module:Name(),
                                                     [quiet, long_result, {numtests, NumTests}]))}}
             || Name <- Names]
    end.
