%% EUnit tests for mod_consult's options (needs ejabberd's econf: the eunit
%% target puts ejabberd's ebin on the path). Routing itself is tested in
%% consult_owners_tests, consult_grpc_tests and, through a real ejabberd, in
%% test/e2e-shim-sidecars.test.ts.
-module(mod_consult_tests).

-include_lib("eunit/include/eunit.hrl").

sidecars_test() ->
    ?assertEqual({ok, []}, sidecars([])),
    ?assertEqual({ok, [{<<"127.0.0.1">>, 50051}, {<<"sidecar-2.example">>, 50052},
                       {<<"127.0.0.1">>, 50052}]},
                 sidecars([<<"127.0.0.1:50051">>, <<"sidecar-2.example:50052">>, <<"127.0.0.1:50052">>])).

sidecars_refused_test_() ->
    [?_assertMatch({error, "Invalid value" ++ _}, sidecars([<<"127.0.0.1">>])),
     ?_assertMatch({error, "Invalid value" ++ _}, sidecars([<<":50051">>])),
     ?_assertMatch({error, "Invalid value" ++ _}, sidecars([<<"[::1]:50051">>])),
     ?_assertMatch({error, "Configuration error: Expected integer from 1 to 65535, got: 0"},
                   sidecars([<<"127.0.0.1:0">>])),
     ?_assertMatch({error, "Configuration error: Expected integer from 1 to 65535, got: 65536"},
                   sidecars([<<"127.0.0.1:65536">>])),
     ?_assertMatch({error, "Configuration error: Duplicated value" ++ _},
                   sidecars([<<"127.0.0.1:50051">>, <<"127.0.0.1:50051">>])),
     ?_assertMatch({error, _}, sidecars(<<"127.0.0.1:50051">>))].

%% Every option has a default and a line in mod_doc.
documented_test() ->
    Options = [K || {K, _} <- mod_consult:mod_options(<<"localhost">>)],
    #{opts := Doc} = mod_consult:mod_doc(),
    ?assertEqual(lists:sort(Options), lists:sort([K || {K, _} <- Doc])),
    ?assertEqual([], proplists:get_value(sidecars, mod_consult:mod_options(<<"localhost">>))).

sidecars(Value) ->
    case econf:validate(mod_consult:mod_opt_type(sidecars), Value) of
        {ok, V} -> {ok, V};
        {error, Why, Ctx} -> {error, lists:flatten(io_lib:format("~ts", [econf:format_error(Why, Ctx)]))}
    end.
