%% EUnit tests for consult_transport: the TLS options it gives OTP and its
%% errors. test/e2e/shim-grpc-tls.test.ts runs it against a real TLS sidecar.
-module(consult_transport_tests).

-include_lib("eunit/include/eunit.hrl").

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

