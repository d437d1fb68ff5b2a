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

%% Defaults: no TLS, no files; and the TLS options are connection options
%% (every host must agree, a change reconnects).
tls_defaults_test() ->
    Defaults = mod_consult:mod_options(<<"localhost">>),
    ?assertEqual(false, proplists:get_value(sidecar_tls, Defaults)),
    [?assertEqual(undefined, proplists:get_value(K, Defaults))
     || K <- [sidecar_cafile, sidecar_certfile, sidecar_keyfile, sidecar_tls_server_name]],
    ?assertEqual([], mod_consult:tls_problems(conn(#{}))),
    ?assertEqual(false, mod_consult:tls_config(conn(#{}), <<"127.0.0.1">>)).

tls_problems_test_() ->
    Problems = fun(Opts) -> [lists:flatten(P) || P <- mod_consult:tls_problems(conn(Opts))] end,
    [?_assertMatch(["sidecar_tls: true needs sidecar_cafile" ++ _], Problems(#{sidecar_tls => true})),
     ?_assertEqual([], Problems(#{sidecar_tls => true, sidecar_cafile => <<"/ca.pem">>})),
     ?_assertEqual([], Problems(#{sidecar_tls => true, sidecar_cafile => <<"/ca.pem">>,
                                  sidecar_certfile => <<"/shim.pem">>})),
     ?_assertMatch(["sidecar_keyfile is set but sidecar_certfile is not" ++ _],
                   Problems(#{sidecar_tls => true, sidecar_cafile => <<"/ca.pem">>,
                              sidecar_keyfile => <<"/shim.key">>})),
     ?_assertMatch(["sidecar_cafile, sidecar_tls_server_name set but sidecar_tls is false" ++ _],
                   Problems(#{sidecar_cafile => <<"/ca.pem">>, sidecar_tls_server_name => <<"x">>}))].

%% What each connection gets: the name to check is the sidecar's host unless overridden.
tls_config_test_() ->
    Tls = #{sidecar_tls => true, sidecar_cafile => <<"/etc/ca.pem">>},
    [?_assertEqual(#{cafile => "/etc/ca.pem", server_name => "10.0.0.11"},
                   mod_consult:tls_config(conn(Tls), <<"10.0.0.11">>)),
     ?_assertEqual(#{cafile => "/etc/ca.pem", server_name => "sidecar.example.net"},
                   mod_consult:tls_config(conn(Tls#{sidecar_tls_server_name => <<"sidecar.example.net">>}),
                                          <<"10.0.0.11">>)),
     ?_assertEqual(#{cafile => "/etc/ca.pem", server_name => "s1", certfile => "/etc/shim.pem",
                     keyfile => "/etc/shim.key"},
                   mod_consult:tls_config(conn(Tls#{sidecar_certfile => <<"/etc/shim.pem">>,
                                                    sidecar_keyfile => <<"/etc/shim.key">>}), <<"s1">>))].

%% The SSL options consult_transport gives OTP for a config.
ssl_options_test() ->
    Opts = consult_transport:ssl_options(#{cafile => "/ca.pem", server_name => "10.0.0.11",
                                           certfile => "/c.pem"}),
    ?assertEqual(verify_peer, proplists:get_value(verify, Opts)),
    ?assertEqual("/ca.pem", proplists:get_value(cacertfile, Opts)),
    ?assertEqual("10.0.0.11", proplists:get_value(server_name_indication, Opts)),
    ?assertEqual([<<"h2">>], proplists:get_value(alpn_advertised_protocols, Opts)),
    ?assertEqual("/c.pem", proplists:get_value(certfile, Opts)),
    ?assertEqual(undefined, proplists:get_value(keyfile, Opts)),
    [{match_fun, Match}] = proplists:get_value(customize_hostname_check, Opts),
    %% An IP address as a name matches the certificate's IP address entry only.
    ?assert(Match({dns_id, "10.0.0.11"}, {iPAddress, [10, 0, 0, 11]})),
    ?assertNot(Match({dns_id, "10.0.0.11"}, {iPAddress, [10, 0, 0, 12]})),
    ?assert(Match({dns_id, "::1"}, {iPAddress, [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]})).

%% An unreachable CA file or sidecar is a connect error, never an exception.
transport_errors_test() ->
    {ok, L} = gen_tcp:listen(0, [{ip, {127, 0, 0, 1}}]),
    {ok, Port} = inet:port(L),
    ?assertMatch({error, {options, {cacertfile, _, _}}},
                 consult_transport:connect("127.0.0.1", Port, {tls, #{cafile => "/nonexistent/ca.pem",
                                                                        server_name => "localhost"}}, 1000)),
    gen_tcp:close(L),
    ?assertMatch({error, econnrefused},
                 consult_transport:connect("127.0.0.1", 1, {tls, #{cafile => ?FILE, server_name => "localhost"}}, 1000)),
    ?assertEqual({closed, {tls, s}}, consult_transport:message({ssl_closed, s})),
    ?assertEqual({data, {tcp, s}, <<"x">>}, consult_transport:message({tcp, s, <<"x">>})),
    ?assertEqual(other, consult_transport:message({timeout, r, x})).

%% mod_options with some of them replaced, as conn_opts sees them.
conn(Opts) ->
    maps:merge(maps:from_list(mod_consult:mod_options(<<"localhost">>)), Opts).

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
