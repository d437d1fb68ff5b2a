%% Test support for the consult_grpc suites: a fake sidecar written here on
%% gen_tcp (the test process is the server: it reads the client's frames and
%% writes whatever frames a case needs, valid or not), and callers of the
%% client in their own processes.
-module(consult_fake_sidecar).

-include_lib("eunit/include/eunit.hrl").

-export([foreach/2, setup/0, cleanup/1, listener/0,
         start/1, start/2, new/1, sock/1, raw_headers/1, accept/1, accept/2, out/2, next/2, next/3,
         next_n/3, is/1, response_headers/2, verdict/2, unary_reply/3, verdict_bytes/1, watch_bytes/0,
         watch_frame/3, grpc_frame/1, fields/1, field/2, varint_field/2, call/2, await/1, wait/1]).

%% raw_headers: HEADERS come as {headers_raw, Id, Block} instead of decoded.
-record(srv, {sock, buf = <<>>, data = #{}, events = [], raw_headers = false}).

-define(STANZA, <<"<message to='shop@localhost'><body>hi</body></message>">>).

%%% The fixture

%% EUnit's foreach over the cases Names of Module: each gets a listening
%% socket of its own (setup/0) and 30 s, and cleanup/1 runs after it.
-spec foreach(module(), [atom()]) -> tuple().
foreach(Module, Names) ->
    {foreach, fun setup/0, fun cleanup/1,
     [fun(L) -> {atom_to_list(Name), {timeout, 30, fun() -> Module:Name(L) end}} end
      || Name <- Names]}.

%% Quiet logs (the client logs every reconnect) and a listening socket.
-spec setup() -> gen_tcp:socket().
setup() ->
    logger:set_primary_config(level, none),
    listener().

%% The client stopped if it still runs, the socket closed, logs back on.
-spec cleanup(gen_tcp:socket()) -> ok.
cleanup(L) ->
    catch gen_server:stop(consult_grpc),
    gen_tcp:close(L),
    logger:set_primary_config(level, notice).

%% A socket listening on a free loopback port, for the client to connect to.
-spec listener() -> gen_tcp:socket().
listener() ->
    {ok, L} = gen_tcp:listen(0, [binary, {active, false}, {reuseaddr, true}, {ip, {127, 0, 0, 1}}]),
    L.

%%% The client

%% A client pointed at the listening socket L (fast backoff, no keepalive
%% unless asked), started unlinked, as its supervisor would.
start(L) -> start(L, #{}).

start(L, Extra) ->
    {ok, Port} = inet:port(L),
    Opts = maps:merge(#{host => "127.0.0.1", port => Port, hosts => [<<"localhost">>],
                        node => <<"test@localhost">>, backoff_min => 10, backoff_max => 50,
                        keepalive_interval => infinity}, Extra),
    {ok, Pid} = gen_server:start({local, maps:get(name, Opts, consult_grpc)}, consult_grpc_conn, Opts, []),
    Pid.

%% Accepts a connection, checks the preface, answers the client's SETTINGS
%% and opens the response of its main stream.
accept(L) -> accept(L, []).

accept(L, Settings) ->
    {ok, S} = gen_tcp:accept(L, 5000),
    {ok, Preface} = gen_tcp:recv(S, 24, 5000),
    ?assertEqual(consult_h2:preface(), Preface),
    Srv = #srv{sock = S},
    out(Srv, consult_h2:settings(Settings)),
    {{headers, 1, Headers, false}, Srv1} = next(Srv, fun({headers, 1, _, _}) -> true; (_) -> false end),
    ?assertEqual(<<"/consult.v1.StanzaFilter/FilterStream">>, proplists:get_value(<<":path">>, Headers)),
    response_headers(Srv1, 1),
    {{message, 1, {hello, _}}, Srv2} = next(Srv1, fun({message, 1, {hello, _}}) -> true; (_) -> false end),
    Srv2.

%%% The fake server

%% The server's side of a connection the test accepted itself.
new(Sock) -> #srv{sock = Sock}.

sock(#srv{sock = S}) -> S.

raw_headers(Srv) -> Srv#srv{raw_headers = true}.

out(#srv{sock = S}, IoData) -> ok = gen_tcp:send(S, IoData).

response_headers(Srv, Id) ->
    out(Srv, consult_h2:headers(Id, consult_hpack:encode([{<<":status">>, <<"200">>},
                                                          {<<"content-type">>, <<"application/grpc">>}]),
                                false, 16384)).

verdict(Srv, Seq) ->
    out(Srv, consult_h2:data(1, grpc_frame(field(1, verdict_bytes(Seq))), false)).

unary_reply(Srv, Id, Seq) ->
    response_headers(Srv, Id),
    out(Srv, consult_h2:data(Id, grpc_frame(verdict_bytes(Seq)), false)),
    out(Srv, consult_h2:headers(Id, consult_hpack:encode([{<<"grpc-status">>, <<"0">>}]), true, 16384)).

verdict_bytes(Seq) -> iolist_to_binary(varint_field(1, Seq)).

watch_bytes() -> iolist_to_binary(field(2, [field(1, <<"shop@localhost">>), field(2, <<"agent@localhost">>)])).

grpc_frame(Msg) -> [<<0, (iolist_size(Msg)):32>>, Msg].

%% The next event the predicate accepts (others are skipped): frames as
%% consult_h2 parses them, except that HEADERS (with CONTINUATIONs) come as
%% {headers, Id, DecodedHeaders, EndStream} and the gRPC messages in DATA as
%% {message, Id, Decoded}; {closed, Reason} when the client hung up.
next(Srv, Pred) ->
    next(Srv, Pred, 5000).

next(Srv = #srv{events = [E | Es]}, Pred, Timeout) ->
    case Pred(E) of
        true -> {E, Srv#srv{events = Es}};
        false -> next(Srv#srv{events = Es}, Pred, Timeout)
    end;
next(#srv{sock = closed}, _Pred, _Timeout) ->
    error(no_such_event_before_the_client_hung_up);
next(Srv = #srv{sock = S, buf = Buf}, Pred, Timeout) ->
    case consult_h2:parse(Buf, 16#ffffff) of
        {ok, Frame, Rest} ->
            next(event(Frame, Srv#srv{buf = Rest}), Pred, Timeout);
        more ->
            case gen_tcp:recv(S, 0, Timeout) of
                {ok, Data} -> next(Srv#srv{buf = <<Buf/binary, Data/binary>>}, Pred, Timeout);
                {error, timeout} -> error({no_event_within, Timeout});
                {error, Reason} ->
                    gen_tcp:close(S),
                    next(Srv#srv{events = [{closed, Reason}], buf = <<>>, sock = closed}, Pred, Timeout)
            end
    end.

next_n(Srv, 0, _Pred) -> {done, Srv};
next_n(Srv, N, Pred) ->
    {_, Srv1} = next(Srv, Pred),
    next_n(Srv1, N - 1, Pred).

is(Tag) -> fun(E) -> is_tuple(E) andalso element(1, E) =:= Tag end.

event({headers, Id, _ES, true, Block}, Srv = #srv{raw_headers = true}) ->
    Srv#srv{events = Srv#srv.events ++ [{headers_raw, Id, Block}]};
event({headers, Id, ES, EH, Fragment}, Srv) ->
    collect_headers(Id, ES, EH, [Fragment], Srv);
event({data, Id, ES, Data, _}, Srv = #srv{data = D}) ->
    Buf = <<(maps:get(Id, D, <<>>))/binary, Data/binary>>,
    {Msgs, Rest} = grpc_messages(Buf, []),
    Events = [{message, Id, decode(Id, M)} || M <- Msgs] ++ [{end_stream, Id} || ES],
    Srv#srv{data = D#{Id => Rest}, events = Srv#srv.events ++ Events};
event(Frame, Srv) ->
    Srv#srv{events = Srv#srv.events ++ [Frame]}.

collect_headers(Id, ES, true, Fragments, Srv) ->
    {ok, Headers, _} = consult_hpack:decode(iolist_to_binary(lists:reverse(Fragments)), consult_hpack:new()),
    Srv#srv{events = Srv#srv.events ++ [{headers, Id, Headers, ES}]};
collect_headers(Id, ES, false, Fragments, Srv = #srv{sock = S, buf = Buf}) ->
    case consult_h2:parse(Buf, 16#ffffff) of
        {ok, {continuation, Id, EH, F}, Rest} -> collect_headers(Id, ES, EH, [F | Fragments], Srv#srv{buf = Rest});
        more ->
            {ok, Data} = gen_tcp:recv(S, 0, 5000),
            collect_headers(Id, ES, false, Fragments, Srv#srv{buf = <<Buf/binary, Data/binary>>})
    end.

grpc_messages(<<0, Len:32, Msg:Len/binary, Rest/binary>>, Acc) -> grpc_messages(Rest, [Msg | Acc]);
grpc_messages(Rest, Acc) -> {lists:reverse(Acc), Rest}.

%% Stream 1 carries ShimMessages; unary streams a FilterRequest.
decode(1, Msg) ->
    case fields(Msg) of
        [{1, F}] -> {filter, proplists:get_value(1, fields(F), 0), proplists:get_value(4, fields(F))};
        [{2, E}] -> {event, E};
        [{3, H}] -> {hello, H};
        [{4, A}] -> {inject_ack, A};
        [{5, C}] -> {cluster, C}
    end;
decode(_, Msg) ->
    {request, proplists:get_value(1, fields(Msg), 0)}.

%% Varint and LEN fields only: [{Field, Value}].
fields(<<>>) -> [];
fields(Bin) ->
    {Key, Rest} = read_varint(Bin),
    case Key band 7 of
        0 -> {V, Rest1} = read_varint(Rest), [{Key bsr 3, V} | fields(Rest1)];
        2 -> {Len, Rest1} = read_varint(Rest), <<V:Len/binary, Rest2/binary>> = Rest1,
             [{Key bsr 3, V} | fields(Rest2)]
    end.

read_varint(<<0:1, B:7, Rest/binary>>) -> {B, Rest};
read_varint(<<1:1, B:7, Rest/binary>>) -> {N, Rest1} = read_varint(Rest), {B bor (N bsl 7), Rest1}.

field(N, Data) -> [varint(N bsl 3 bor 2), varint(iolist_size(Data)), Data].
varint_field(N, V) -> [varint(N bsl 3), varint(V)].
varint(N) when N < 128 -> <<N>>;
varint(N) -> <<1:1, (N band 127):7, (varint(N bsr 7))/binary>>.

watch_frame(Shops, Owned, Id) ->
    consult_h2:data(1, grpc_frame(field(2, [[field(1, S) || S <- Shops], [field(3, S) || S <- Owned],
                                            field(4, Id)])), false).

%%% Callers

%% A caller in its own process; await/1 gives its result.
call(Kind, Timeout) ->
    Self = self(),
    spawn(fun() ->
                  R = case Kind of
                          filter -> consult_grpc:filter(<<"localhost">>, ?STANZA, Timeout);
                          unary -> consult_grpc:unary_filter(<<"localhost">>, ?STANZA, Timeout)
                      end,
                  Self ! {self(), R}
          end).

await(Pid) ->
    receive {Pid, R} -> R after 15000 -> error({no_result_from, Pid}) end.

wait(Fun) -> wait(Fun, 100).
wait(Fun, 0) -> ?assert(Fun());
wait(Fun, N) ->
    case Fun() of
        true -> ok;
        _ -> timer:sleep(20), wait(Fun, N - 1)
    end.
