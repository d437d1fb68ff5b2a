%% A missing PropEr must fail the property suites, not skip them.
-module(consult_properties_tests).

-include_lib("eunit/include/eunit.hrl").

missing_proper_fails_test() ->
    {Title, {_Line, Test}} = consult_properties:missing(no_such_proper),
    ?assertMatch("PropEr (no_such_proper) is not installed: apt-get install erlang-proper", Title),
    ?assertError({proper_not_installed, no_such_proper, "apt-get install erlang-proper"}, Test()).

missing_proper_replaces_the_tests_test() ->
    ?assertEqual(false, consult_properties:missing(proper)),
    ?assertEqual([x], consult_properties:needing_proper([x])).
