%% EUnit tests for mod_consult's options as ejabberd validates and documents
%% them (needs ejabberd's econf: the eunit target puts ejabberd's ebin on
%% the path). What the validated options turn into is consult_options_tests;
%% routing is tested in consult_owners_tests, consult_grpc_tests and,
%% through a real ejabberd, in test/e2e/shim-sidecars.test.ts.
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

%% The TLS options as ejabberd validates them.
tls_options_test_() ->
    Pem = ?FILE,  %% any readable file will do for the validator
    [?_assertEqual({ok, true}, validate(sidecar_tls, true)),
     ?_assertEqual({ok, false}, validate(sidecar_tls, false)),
     ?_assertMatch({error, _}, validate(sidecar_tls, <<"yes please">>)),
     ?_assertMatch({ok, <<_/binary>>}, validate(sidecar_cafile, list_to_binary(Pem))),
     ?_assertMatch({error, _}, validate(sidecar_cafile, <<"/nonexistent/ca.pem">>)),
     ?_assertMatch({error, _}, validate(sidecar_certfile, <<"/nonexistent/shim.pem">>)),
     ?_assertMatch({error, _}, validate(sidecar_keyfile, <<"/nonexistent/shim.key">>)),
     ?_assertEqual({ok, <<"sidecar.example.net">>}, validate(sidecar_tls_server_name, <<"sidecar.example.net">>)),
     ?_assertEqual({ok, <<"10.0.0.11">>}, validate(sidecar_tls_server_name, <<"10.0.0.11">>)),
     ?_assertMatch({error, _}, validate(sidecar_tls_server_name, <<"a name">>)),
     ?_assertMatch({error, _}, validate(sidecar_tls_server_name, <<>>))].

%% Defaults: no TLS, no files.
tls_defaults_test() ->
    Defaults = mod_consult:mod_options(<<"localhost">>),
    ?assertEqual(false, proplists:get_value(sidecar_tls, Defaults)),
    [?assertEqual(undefined, proplists:get_value(K, Defaults))
     || K <- [sidecar_cafile, sidecar_certfile, sidecar_keyfile, sidecar_tls_server_name]].

%% Every connection option is one of mod_consult's.
conn_options_test() ->
    Options = [K || {K, _} <- mod_consult:mod_options(<<"localhost">>)],
    ?assertEqual([], consult_options:conn_options() -- Options),
    ?assertEqual([failure_policy, timeout], lists:sort(Options -- consult_options:conn_options())).

validate(Opt, Value) ->
    case econf:validate(mod_consult:mod_opt_type(Opt), Value) of
        {ok, V} -> {ok, V};
        {error, Why, Ctx} -> {error, lists:flatten(io_lib:format("~ts", [econf:format_error(Why, Ctx)]))}
    end.

sidecars(Value) ->
    case econf:validate(mod_consult:mod_opt_type(sidecars), Value) of
        {ok, V} -> {ok, V};
        {error, Why, Ctx} -> {error, lists:flatten(io_lib:format("~ts", [econf:format_error(Why, Ctx)]))}
    end.
