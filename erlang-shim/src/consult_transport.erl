%% The byte stream under consult_grpc's HTTP/2: plain TCP (h2c) or TLS with
%% ALPN h2, behind one small interface so that the connection code does not
%% care which. A socket is tagged with its transport ({tcp, Port} or
%% {tls, SslSocket}); message/1 turns the socket messages of either kind
%% ({tcp, ...}, {ssl, ...}, closed, error) into one shape.
-module(consult_transport).

-export([connect/4, send/2, activate/1, close/1, message/1, ssl_options/1, describe/1]).

-type config() :: tcp | {tls, tls_config()}.
%% cafile: the CAs that may sign the sidecar's certificate; server_name: the
%% name its certificate must carry (a DNS name or an IP address);
%% certfile/keyfile: our client certificate for mutual TLS.
-type tls_config() :: #{cafile := file:filename(), server_name := string(),
                        certfile => file:filename(), keyfile => file:filename()}.
-type socket() :: {tcp, gen_tcp:socket()} | {tls, ssl:sslsocket()}.
-export_type([config/0, tls_config/0, socket/0]).

-define(ALPN, <<"h2">>).

%% Connects and, for TLS, completes the handshake (certificate checked
%% against cafile and server_name) and checks that the sidecar chose h2. The
%% timeout covers both. Every failure is an error tuple, never an exception.
-spec connect(string(), inet:port_number(), config(), timeout()) -> {ok, socket()} | {error, term()}.
connect(Host, Port, Config, Timeout) ->
    TcpOpts = [binary, {active, false}, {nodelay, true},
               {send_timeout, 5000}, {send_timeout_close, true}],
    try do_connect(Host, Port, Config, TcpOpts, Timeout)
    catch Class:Reason -> {error, {Class, Reason}}
    end.

do_connect(Host, Port, tcp, TcpOpts, Timeout) ->
    case gen_tcp:connect(Host, Port, TcpOpts, Timeout) of
        {ok, Sock} -> {ok, {tcp, Sock}};
        Error -> Error
    end;
do_connect(Host, Port, {tls, Tls}, TcpOpts, Timeout) ->
    case application:ensure_all_started(ssl) of
        {ok, _} ->
            case ssl:connect(Host, Port, TcpOpts ++ ssl_options(Tls), Timeout) of
                {ok, Sock} ->
                    case ssl:negotiated_protocol(Sock) of
                        {ok, ?ALPN} ->
                            {ok, {tls, Sock}};
                        Other ->
                            _ = ssl:close(Sock),
                            {error, {alpn, Other}}
                    end;
                Error ->
                    Error
            end;
        {error, Why} ->
            {error, {ssl_not_started, Why}}
    end.

%% verify_peer against cafile, with the hostname check against server_name:
%% a DNS name by the HTTPS rules (a wildcard matches one label), an IP
%% address against the certificate's IP address entries. SNI carries the
%% name (for an IP address too: OTP sends none for it, RFC 6066 allows none,
%% but this is also the name the check uses).
-spec ssl_options(tls_config()) -> [ssl:tls_client_option()].
ssl_options(Tls = #{cafile := CaFile, server_name := Name}) ->
    Client = [{K, maps:get(K, Tls)} || K <- [certfile, keyfile], maps:is_key(K, Tls)],
    [{verify, verify_peer},
     {cacertfile, CaFile},
     {server_name_indication, Name},
     {customize_hostname_check, [{match_fun, match_fun()}]},
     {alpn_advertised_protocols, [?ALPN]},
     {versions, ['tlsv1.3', 'tlsv1.2']},
     %% Handshake failures are ours to log (once per series, not per retry).
     {log_level, warning}
     | Client].

%% OTP checks a name given as a string as a DNS name only; an IP address
%% written as a string must match an iPAddress entry of the certificate.
match_fun() ->
    Https = public_key:pkix_verify_hostname_match_fun(https),
    fun({dns_id, Ref}, {iPAddress, Bytes} = Presented) ->
            case inet:parse_address(Ref) of
                {ok, IP} -> ip_bytes(IP) =:= Bytes;
                {error, _} -> Https({dns_id, Ref}, Presented)
            end;
       (Ref, Presented) ->
            Https(Ref, Presented)
    end.

ip_bytes({A, B, C, D}) -> [A, B, C, D];
ip_bytes(IP) -> lists:append([[W bsr 8, W band 255] || W <- tuple_to_list(IP)]).

-spec send(socket(), iodata()) -> ok | {error, term()}.
send({tcp, Sock}, Data) -> gen_tcp:send(Sock, Data);
send({tls, Sock}, Data) -> ssl:send(Sock, Data).

%% The next input arrives as one message (see message/1).
-spec activate(socket()) -> ok | {error, term()}.
activate({tcp, Sock}) -> inet:setopts(Sock, [{active, once}]);
activate({tls, Sock}) -> ssl:setopts(Sock, [{active, once}]).

-spec close(socket()) -> ok.
close({tcp, Sock}) -> _ = gen_tcp:close(Sock), ok;
close({tls, Sock}) -> _ = ssl:close(Sock), ok.

%% A socket message of either transport, or other for anything else.
-spec message(term()) -> {data, socket(), binary()} | {closed, socket()} | {error, socket(), term()} | other.
message({tcp, Sock, Data}) -> {data, {tcp, Sock}, Data};
message({tcp_closed, Sock}) -> {closed, {tcp, Sock}};
message({tcp_error, Sock, Reason}) -> {error, {tcp, Sock}, {tcp_error, Reason}};
message({ssl, Sock, Data}) -> {data, {tls, Sock}, Data};
message({ssl_closed, Sock}) -> {closed, {tls, Sock}};
message({ssl_error, Sock, Reason}) -> {error, {tls, Sock}, {tls_error, Reason}};
message(_) -> other.

%% For log lines: "" for TCP, " over TLS" for TLS.
-spec describe(config()) -> string().
describe(tcp) -> "";
describe({tls, _}) -> " over TLS".
